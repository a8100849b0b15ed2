"""Targets on fake-gcs-server: the gcloud-aio-storage client's side."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from registry.backends.base import Backend
from registry.backends.gcs import CHUNK_QUANTUM, GCSBackend
from tests.targets.base import HttpLog, Sent, Target

_NAME_IN_BODY = re.compile(rb'"name":\s*"([^"]+)"')


class AiohttpLog(HttpLog):
    """Wraps the backend's aiohttp session: one call per request sent."""

    def __init__(self, backend: GCSBackend) -> None:
        super().__init__()
        session = backend.loop_state()["session"]
        original = session._request

        def request(method: str, url: Any, **kwargs: Any) -> Any:
            self.sent.append(self._describe(method, str(url), kwargs))
            return original(method, url, **kwargs)

        session._request = request

    @staticmethod
    def _describe(method: str, url: str, kwargs: dict[str, Any]) -> Sent:
        params = dict(kwargs.get("params") or {})
        path = url.split("?", 1)[0]
        key: str | None = unquote(path.split("/o/", 1)[1]) if "/o/" in path else None
        if "uploadType" in params:
            upload = f"{method} upload:{params['uploadType']}"
            kind = "put" if upload == "POST upload:multipart" else upload
            body = kwargs.get("data")
            head = body.getvalue()[:4096] if hasattr(body, "getvalue") else b""
            found = _NAME_IN_BODY.search(head)  # a multipart upload names its object inside
            key = params.get("name") or (found.group(1).decode() if found else None)
        elif path.endswith("/o"):
            kind = "list" if method == "GET" else f"{method} list"
        elif params.get("alt") == "media":
            kind = "get" if method == "GET" else f"{method} media"
        else:
            kind = f"{method} meta"
        condition = params.get("ifGenerationMatch")
        return Sent(kind, key, "create" if condition == "0" else condition)


@dataclass(frozen=True)
class GCSTarget(Target[GCSBackend]):
    kind = "gcs"

    async def http_log(self, backend: Backend) -> HttpLog:
        assert isinstance(backend, GCSBackend)
        await backend._client()  # this loop's client and session (created on first use)
        return AiohttpLog(backend)

    def small_ranges(self) -> dict[str, Any]:
        return {"chunk_size": CHUNK_QUANTUM}  # 256 KiB: a 1 MiB artifact in 5 GETs


def write_service_account(path: Path, token_uri: str, private_key: str | None = None) -> None:
    """A well-formed service-account key file (a fresh RSA key unless
    ``private_key`` is given) whose token endpoint is ``token_uri``."""
    if private_key is None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_key = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "registry-tests",
                "private_key_id": "0",
                "private_key": private_key,
                "client_email": "tests@registry-tests.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": token_uri,
            }
        )
    )
