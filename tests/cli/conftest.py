"""Place fixtures for the command-line tests (see places.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.places import make_place
from tests.cli.runner import Place


@pytest.fixture(params=["local", "s3", "gcs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, request, tmp_path)


@pytest.fixture
def s3_place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place("s3", request, tmp_path)


@pytest.fixture
def gcs_place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place("gcs", request, tmp_path)


@pytest.fixture
def local_place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place("local", request, tmp_path)
