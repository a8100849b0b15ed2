"""The backend contract on the in-process MemoryBackend."""

from __future__ import annotations

import pytest

from registry.backends.base import Backend
from registry.backends.memory import MemoryBackend
from registry.testing import BackendTests


class TestMemoryBackend(BackendTests):
    @pytest.fixture
    def backend(self) -> Backend:
        return MemoryBackend()
