"""The checks ``registry doctor`` runs against a store, each saying in plain
words what is wrong and how to fix it.

Everything is written under a fresh ``_doctor/<random>/`` prefix (outside the
registry's ``meta/`` and ``objects/``) and removed at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from registry.backends.base import Backend
from registry.cli.locate import backend_from, scheme_of
from registry.cli.options import Settings
from registry.exceptions import BackendError, PreconditionFailed

Status = Literal["ok", "fail", "skip"]
CONNECT_TIMEOUT = 5.0


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


class Failed(Exception):
    """A check failed: ``detail`` says what happened, ``fix`` what to do."""

    def __init__(self, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


def probe_backend(uri: str, settings: Settings) -> Backend:
    """The store's backend, set up so that a small file already takes a
    multipart upload and several ranged reads; few retries, so a dead
    endpoint is reported quickly."""
    scheme = scheme_of(uri)
    if scheme == "s3":
        from registry.backends.s3 import MIN_PART_SIZE

        return backend_from(uri, settings, part_size=MIN_PART_SIZE, max_attempts=2)
    if scheme == "gs":
        from registry.backends.gcs import CHUNK_QUANTUM

        return backend_from(
            uri, settings, chunk_size=CHUNK_QUANTUM, upload_chunk=CHUNK_QUANTUM, max_attempts=2
        )
    return backend_from(uri, settings)


def _endpoint_of(backend: Backend) -> str | None:
    """``https://host:port`` the backend talks to (None: local disk)."""
    if not backend.is_remote:
        return None
    url = getattr(backend, "endpoint_url", None) or getattr(backend, "api_root", None)
    if url is None:  # S3 on AWS: the global endpoint answers every region's buckets
        region = getattr(backend, "region", None)
        url = f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"
    return str(url)


def _large_size(backend: Backend) -> int:
    """A size that takes three upload parts and three ranged reads."""
    part = getattr(backend, "part_size", None) or getattr(backend, "chunk_size", None)
    return 2 * int(part) + 1024 * 1024 if part else 0


class Doctor:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.remote = backend.is_remote
        self.gcs = type(backend).__name__ == "GCSBackend"
        self.prefix = f"_doctor/{uuid.uuid4().hex}/"
        self.checks: list[Check] = []
        self.uploaded = False  # the multipart probe exists, for the ranged reads

    async def run(self) -> list[Check]:
        scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
        try:
            if not await self._step("reachable", self.reachable):
                return self._skip_rest("the store cannot be reached")
            if not await self._access():
                return self._skip_rest("the store refused access")
            if not await self._step("write and read back", self.write_read):
                return self._skip_rest("nothing can be written")
            await self._step("listing", self.listing)
            await self._step(
                "conditional create (ifGenerationMatch=0)"
                if self.gcs
                else "conditional create (If-None-Match)",
                self.conditional_create,
            )
            await self._step(
                "compare-and-swap (ifGenerationMatch)"
                if self.gcs
                else "compare-and-swap (If-Match)",
                self.compare_and_swap,
            )
            big = scratch / "big"
            await self._step("multipart upload", lambda: self.multipart(big))
            await self._step("ranged reads", lambda: self.ranged(big, scratch / "back"))
            await self._step("cleanup", self.cleanup)
            return self.checks
        finally:
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)
            await self.backend.aclose()

    # -- plumbing ----------------------------------------------------------------

    async def _step(self, name: str, check: Callable[[], Awaitable[str]]) -> bool:
        try:
            detail = await check()
        except Failed as failed:
            self.checks.append(Check(name, "fail", failed.detail, failed.fix))
            return False
        except _Skipped as skipped:
            self.checks.append(Check(name, "skip", str(skipped)))
            return True
        except BackendError as exc:
            self.checks.append(Check(name, "fail", " ".join(str(exc).split()), _fix_for(exc)))
            return False
        self.checks.append(Check(name, "ok", detail))
        return True

    def _skip_rest(self, why: str) -> list[Check]:
        names = [
            "credentials",
            "bucket",
            "write and read back",
            "listing",
            "conditional create",
            "compare-and-swap",
            "multipart upload",
            "ranged reads",
        ]
        done = {c.name.split(" (")[0] for c in self.checks}
        self.checks += [Check(n, "skip", f"not checked: {why}") for n in names if n not in done]
        return self.checks

    def key(self, rel: str) -> str:
        return self.prefix + rel

    # -- the checks --------------------------------------------------------------

    async def reachable(self) -> str:
        endpoint = _endpoint_of(self.backend)
        if endpoint is None:
            root = Path(str(getattr(self.backend, "root", ".")))
            return await anyio.to_thread.run_sync(_local_folder, root)
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                stream = await anyio.connect_tcp(host, port)
        except (OSError, TimeoutError) as exc:
            raise Failed(
                f"cannot connect to {host}:{port} ({exc or 'timed out'})",
                "check the endpoint (--endpoint, AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST), "
                "that the server runs, and that no firewall or proxy is in the way",
            ) from None
        await stream.aclose()
        return f"{host}:{port} accepts connections"

    async def _access(self) -> bool:
        """Credentials and bucket, told apart by the first request's answer."""
        if not self.remote:
            self.checks.append(Check("credentials", "skip", "local disk: none needed"))
            self.checks.append(Check("bucket", "skip", "local disk: no bucket"))
            return True
        try:
            [entry async for entry in self.backend.list(self.prefix)]
        except BackendError as exc:
            kind = type(exc).__name__
            message = " ".join(str(exc).split())
            if "Unreachable" in kind:
                self.checks.append(Check("credentials", "fail", message, _fix_for(exc)))
                return False
            if "BucketNotFound" in kind:
                self.checks.append(Check("credentials", "ok", "accepted"))
                self.checks.append(Check("bucket", "fail", message, _fix_for(exc)))
                return False
            self.checks.append(Check("credentials", "fail", message, _fix_for(exc)))
            return False
        anonymous = getattr(self.backend, "anonymous", False)
        self.checks.append(
            Check("credentials", "ok", "none needed (emulator)" if anonymous else "accepted")
        )
        bucket = getattr(self.backend, "bucket", "?")
        self.checks.append(Check("bucket", "ok", f"{bucket!r} exists"))
        return True

    async def write_read(self) -> str:
        data = os.urandom(1024)
        await self.backend.put(self.key("probe"), data)
        if await self.backend.get(self.key("probe")) != data:
            raise Failed(
                "a 1 KiB object read back different from what was written",
                "the store corrupts data: do not use it",
            )
        return "a 1 KiB object round-trips"

    async def listing(self) -> str:
        await self.backend.put(self.key("sub/two"), b"two")
        every = {e.key async for e in self.backend.list(self.prefix) if not isinstance(e, str)}
        wanted = {self.key("probe"), self.key("sub/two")}
        if not wanted <= every:
            raise Failed(
                f"a listing of {self.prefix} is missing {sorted(wanted - every)}",
                "the store's listings are incomplete or delayed: versions would seem missing",
            )
        children = {
            e if isinstance(e, str) else e.key
            async for e in self.backend.list(self.prefix, delimiter="/")
        }
        if self.key("sub/") not in children or self.key("probe") not in children:
            raise Failed(
                f"a delimited listing of {self.prefix} gave {sorted(children)}",
                "the store does not support listing with a delimiter ('/')",
            )
        return "recursive and delimited listings see new keys"

    async def conditional_create(self) -> str:
        key = self.key("create")
        await self.backend.put(key, b"first", mode="create")
        try:
            await self.backend.put(key, b"second", mode="create")
        except PreconditionFailed:
            pass
        else:
            header = "ifGenerationMatch=0" if self.gcs else "If-None-Match: *"
            raise Failed(
                f"a second create of the same key succeeded: the store ignores {header}, so "
                "two writers can both commit the same version and one silently replaces the "
                "other (MVCC is unsafe here)",
                "upgrade the store to a release that enforces conditional writes, or use one "
                "that does; until then never let two processes write this registry at once",
            )
        if await self.backend.get(key) != b"first":
            raise Failed(
                "a refused create still replaced the value",
                "the store applies writes it reports as failed: do not use it",
            )
        return "a second create of the same key is refused"

    async def compare_and_swap(self) -> str:
        key = self.key("swap")
        first = await self.backend.put(key, b"one")
        await self.backend.put(key, b"two", if_match=first.etag)
        try:
            await self.backend.put(key, b"stale", if_match=first.etag)
        except PreconditionFailed:
            return "a write on a stale version is refused"
        header = "ifGenerationMatch" if self.gcs else "If-Match"
        raise Failed(
            f"a write conditional on a stale version succeeded: the store ignores {header}",
            "materializer registrations can be lost when two processes register at once; "
            "upgrade the store to one that enforces conditional writes",
        )

    async def multipart(self, big: Path) -> str:
        size = _large_size(self.backend)
        if not size:
            raise _Skipped("local disk: files are written whole")
        await anyio.to_thread.run_sync(big.write_bytes, os.urandom(size))
        info = await self.backend.put_file(self.key("big"), big)
        self.uploaded = True
        if info.size != size:
            raise Failed(
                f"a {size} byte upload in parts was stored as {info.size} bytes",
                "the store mishandles multipart uploads: large artifacts would be damaged",
            )
        return f"{size // 1024**2} MiB uploaded in parts"

    async def ranged(self, big: Path, back: Path) -> str:
        if not self.uploaded:
            raise _Skipped("local disk: read in place" if not self.remote else "no upload to read")
        await self.backend.get_file(self.key("big"), back)
        same = await anyio.to_thread.run_sync(lambda: _sha256(big) == _sha256(back))
        if not same:
            raise Failed(
                "an object read back in byte ranges differs from what was uploaded",
                "the store ignores or mishandles Range requests: large loads would fail",
            )
        return "an object read in several byte ranges matches"

    async def cleanup(self) -> str:
        keys = [e.key async for e in self.backend.list(self.prefix) if not isinstance(e, str)]
        await self.backend.delete(keys)
        return f"removed {len(keys)} probe objects"


def _local_folder(root: Path) -> str:
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise Failed(f"{existing} is not writable", "check the folder's permissions")
    return f"{root} ({'exists' if root.exists() else 'will be created'})"


class _Skipped(Exception):
    """Not applicable to this store."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fix_for(exc: BaseException) -> str:
    kind = type(exc).__name__
    if "Unreachable" in kind:
        return "check the endpoint and that the server runs and is reachable from here"
    if "BucketNotFound" in kind:
        return "create the bucket, or fix its name in the URI"
    if "AccessDenied" in kind:
        return (
            "check the credentials (--access-key/--secret-key or AWS_* variables for S3; "
            "--credentials or GOOGLE_APPLICATION_CREDENTIALS for GCS) and the bucket's permissions"
        )
    return "run with -v for the requests sent"
