"""What every S3-compatible test server shares: credentials and the backend."""

from __future__ import annotations

from typing import Any

from registry.backends.s3 import S3Backend
from tests.servers.process import ServerProcess


class S3Server(ServerProcess):
    """An S3 server process; ``access_key`` / ``secret_key`` are what it accepts."""

    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def backend(self, bucket: str, **options: Any) -> S3Backend:
        return S3Backend(
            bucket,
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            **options,
        )
