"""What ``logging.basicConfig(level=logging.DEBUG)`` shows of the backends:
each request (operation, key, bytes, milliseconds) at DEBUG on
``registry.backends.<name>``, buckets created at INFO, retries at WARNING
(``test_remote.py``, ``test_retry.py``); and the library installs no handler."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from tests.backends.conftest import S3Target
from tests.backends.remotes import remote_for

KEY = "logged/key.bin"
VALUE = b"x" * 1234


@pytest.fixture(params=[("local", "local"), ("moto", "s3"), ("gcs", "gcs")], ids=lambda p: p[0])
def logged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Backend, str]:
    """A backend of each kind, and the logger its requests go to."""
    name, logger = request.param
    if name == "local":
        return LocalBackend(tmp_path / "store"), logger
    return remote_for(request, name).backend(), logger


@pytest.mark.anyio
async def test_each_request_is_logged_at_debug(
    logged: tuple[Backend, str], caplog: pytest.LogCaptureFixture
) -> None:
    backend, logger = logged
    await backend.head("warm-up")  # opens the connection, outside the capture
    try:
        with caplog.at_level(logging.DEBUG, logger="registry.backends"):
            await backend.put(KEY, VALUE)
            assert await backend.get(KEY) == VALUE
    finally:
        await backend.aclose()
    records = [r for r in caplog.records if r.name == f"registry.backends.{logger}"]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    # the put and the get: key, bytes and milliseconds
    moved = [r.getMessage() for r in records if f"{KEY}: 1234 bytes, " in r.getMessage()]
    assert len(moved) == 2, [r.getMessage() for r in records]
    assert all(message.endswith(" ms") for message in moved)


@pytest.mark.anyio
async def test_nothing_is_timed_or_formatted_with_debug_off(
    moto_target: S3Target, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("a request was wrapped for logging with DEBUG off")

    monkeypatch.setattr("registry.backends.calls._logged", refuse)
    backend = moto_target.backend()
    try:
        with caplog.at_level(logging.INFO, logger="registry.backends"):
            await backend.put(KEY, VALUE)
            assert await backend.get(KEY) == VALUE
    finally:
        await backend.aclose()
    assert not [r for r in caplog.records if r.name.startswith("registry.backends")]


def test_the_library_installs_no_handler() -> None:
    import registry.backends.gcs
    import registry.backends.s3  # noqa: F401

    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("registry") and isinstance(logger, logging.Logger):
            assert logger.handlers == [], name
