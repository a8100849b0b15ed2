"""One server subprocess on 127.0.0.1, whatever the server.

A :class:`ServerProcess` picks free ports once, so a restart comes back on the
same ports and the same data folder; it is stopped by PID: SIGTERM, then
SIGKILL after a bound (SeaweedFS's shutdown can hang). Subclasses (one module
per server kind) say how to build the command line, when the server is ready
and how to make a backend on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from registry.backends.base import Backend

HOST = "127.0.0.1"
STOP_GRACE = 5.0
START_ATTEMPTS = 3  # a port taken between choosing it and binding it: try others
# settings of the machine that must not leak into a server
_CLOUD_ENV = ("AWS_", "GOOGLE_", "GCLOUD_", "STORAGE_EMULATOR")

S = TypeVar("S", bound="ServerProcess")


class ServerStartError(RuntimeError):
    """A test server did not come up (or failed its self-check)."""


def port_is_free(port: int) -> bool:
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


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the test process dies, so a
    killed test session leaves no server behind (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ServerProcess(ABC):
    """A server subprocess of one kind, restartable on its ports and data."""

    name: str
    keeps_data: bool  # whether a restart comes back with the data stored before
    workdir_prefix = "registry-server-"
    ready_timeout = 30.0

    def __init__(self) -> None:
        # short paths: SeaweedFS's unix socket paths are limited to ~100 bytes
        self.workdir = Path(tempfile.mkdtemp(prefix=self.workdir_prefix))
        self.log = self.workdir / "server.log"
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    # -- what a server kind says ------------------------------------------------------

    @abstractmethod
    def pick_ports(self) -> dict[str, int]:
        """Free ports for every listener of the server."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line, on ``self.ports`` and ``self.workdir``."""

    @abstractmethod
    def ready_url(self) -> str:
        """A URL that answers once the server takes requests."""

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    def backend(self, bucket: str, **options: Any) -> Backend:
        """A backend on ``bucket`` of this server."""

    def is_ready(self, status: int) -> bool:
        """Whether an HTTP status from :meth:`ready_url` means ready (any answer)."""
        return True

    # -- life cycle -------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start on free ports (first time) or restart on the same ports and data."""
        attempts = START_ATTEMPTS if not self.ports else 1
        for attempt in range(attempts):
            if attempt or not self.ports:
                self.ports = self.pick_ports()
            started = time.monotonic()
            self.proc = self._spawn()
            try:
                self._wait_ready()
            except ServerStartError:
                stop_process(self.proc)
                if attempt == attempts - 1:
                    raise
                continue
            self.start_seconds = time.monotonic() - started
            return

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as in a crash or power loss."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, grace: float = STOP_GRACE) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace)

    def close(self, grace: float = STOP_GRACE) -> None:
        """Stop and remove the data folder."""
        self.stop(grace)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLOUD_ENV)}
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # Ctrl-C in pytest reaches us, not the server
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        url = self.ready_url()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name}: exited with {self.proc.returncode} while starting\n"
                    f"{log_tail(self.log)}"
                )
            status: int | None = None
            try:
                with opener.open(url, timeout=1.0) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError):
                pass
            if status is not None and self.is_ready(status):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{url}: not ready within {self.ready_timeout}s\n{log_tail(self.log)}"
                )
            time.sleep(0.05)


@contextlib.contextmanager
def running(server: S, grace: float = STOP_GRACE) -> Iterator[S]:
    """``server`` started; stopped by PID and its data removed on exit, on error too."""
    try:
        server.start()
        yield server
    finally:
        server.close(grace)
