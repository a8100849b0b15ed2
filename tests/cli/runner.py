"""Running the ``registry`` command as a subprocess, as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.backends.base import Backend
from registry.backends.gcs import GCSBackend
from registry.backends.local import LocalBackend
from registry.backends.s3 import S3Backend

TIMEOUT = 90


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@dataclass(frozen=True)
class Place:
    """A registry location and the environment a shell would have for it."""

    kind: str
    uri: str
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, *args: str, stdin: str | None = None) -> Result:
        """``registry ARGS -r URI`` with this place's environment."""
        return cli(*args, "-r", self.uri, env=self.env, stdin=stdin)


def cli(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Result:
    full_env = {k: v for k, v in os.environ.items() if k != "REGISTRY_URI"}
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "registry", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin if stdin is not None else "",
        timeout=TIMEOUT,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def one_error_line(result: Result) -> str:
    """The error a failed command printed: exactly one line, no traceback."""
    assert result.code != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("registry: error: "), result.stderr
    return lines[0]


def backend_of(place: Place) -> Backend:
    """The backend behind ``place``, built in the test process."""
    if place.kind == "s3":
        return S3Backend(
            uri=place.uri,
            endpoint=place.env["AWS_ENDPOINT_URL"],
            access_key=place.env["AWS_ACCESS_KEY_ID"],
            secret_key=place.env["AWS_SECRET_ACCESS_KEY"],
        )
    if place.kind == "gcs":
        return GCSBackend(uri=place.uri, endpoint=place.env["STORAGE_EMULATOR_HOST"])
    return LocalBackend(place.uri)


def overwrite(place: Place, key: str, data: bytes) -> None:
    """Replace what is stored at ``key`` (to damage an artifact)."""

    async def write() -> None:
        backend = backend_of(place)
        try:
            await backend.put(key, data)
        finally:
            await backend.aclose()

    asyncio.run(write())
