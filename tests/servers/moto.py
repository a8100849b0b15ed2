"""moto's S3 (``moto_server -H 127.0.0.1 -p PORT``): the fast S3 path.

moto keeps its data in memory, so a restart comes back empty.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.servers.process import HOST, free_port
from tests.servers.s3 import S3Server


def moto_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script), "-H", HOST, "-p", str(port)]
    found = shutil.which("moto_server")
    if found:
        return [found, "-H", HOST, "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


class MotoServer(S3Server):
    name = "moto"
    workdir_prefix = "registry-moto-"
    keeps_data = False
    access_key = "moto-access-key"  # moto accepts any credentials
    secret_key = "moto-secret-key"

    def pick_ports(self) -> dict[str, int]:
        return {"s3": free_port()}

    def command(self) -> list[str]:
        return moto_command(self.ports["s3"])

    def ready_url(self) -> str:
        return f"{self.endpoint}/moto-api/"
