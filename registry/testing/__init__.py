"""Reusable test suites for code built on ``registry``.

``BackendTests`` holds the whole byte-level backend contract (DESIGN §3) as
pytest tests. Subclass it once per backend and provide a ``backend`` fixture::

    class TestMyBackend(BackendTests):
        @pytest.fixture
        def backend(self, tmp_path: Path) -> Backend:
            return MyBackend(...)

Importing this package needs pytest and anyio's pytest plugin (both come with
the ``dev`` extra).
"""

from registry.testing.backend_tests import BackendTests

__all__ = ["BackendTests"]
