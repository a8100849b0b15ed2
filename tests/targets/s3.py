"""Targets on S3 servers (moto, SeaweedFS): the aioboto3 client's side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from registry.backends.base import Backend
from registry.backends.s3 import S3Backend
from tests.servers import S3Server
from tests.targets.base import HttpLog, Sent, Target

KINDS = {("PUT", "PutObject"): "put", ("GET", "GetObject"): "get", ("GET", "ListObjectsV2"): "list"}


class BotocoreLog(HttpLog):
    """Fed by the client's 'before-send' event: one call per attempt."""

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        kind = KINDS.get((request.method, operation), f"{request.method} {operation}")
        # path-style addressing: /bucket/key (a listing has no key)
        parts = unquote(urlsplit(request.url).path).split("/", 2)
        key = parts[2] if len(parts) > 2 and parts[2] else None
        condition = request.headers.get("If-None-Match")
        if isinstance(condition, bytes):
            condition = condition.decode()
        self.sent.append(Sent(kind, key, "create" if condition == "*" else condition))


@dataclass(frozen=True)
class S3Target(Target[S3Backend]):
    kind = "s3"

    def credentials(self) -> dict[str, str]:
        server = cast(S3Server, self.server)
        return {"access_key": server.access_key, "secret_key": server.secret_key}

    async def http_log(self, backend: Backend) -> HttpLog:
        assert isinstance(backend, S3Backend)
        log = BotocoreLog()
        client = await backend._client()  # this loop's client (created on first use)
        client.meta.events.register("before-send.s3", log)
        return log
