"""Worker functions for the multi-process race and crash tests.

They run in fresh interpreters, so they live in an importable module, take
only picklable arguments and report back through small JSON files (a killed
process cannot return anything; a file it wrote before dying still tells what
it did).

A worker opens its registry from ``where``, a dict of strings: a local folder
(``{"kind": "local", "root": ...}``) or a remote bucket and prefix with the
worker's own cache folder (what ``Target.worker_config`` gives); processes on
a remote target share nothing but the bucket, as separate machines would.

Payloads are self-checking: ``make_payload(tag, size)`` carries its own tag and
length, and ``check_payload`` rejects anything truncated, padded or mixed from
two writes, so a torn read cannot pass for a value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TextIO

from registry import AsyncRegistry
from registry.backends.base import Backend
from registry.backends.local import LocalBackend
from registry.exceptions import RegistryObjectNotFound, RegistryVersionConflict

KIB = 1024
MIB = 1024 * KIB
BARRIER_TIMEOUT = 60.0
Where = dict[str, str]
Verify = Literal["none", "integrity", "full"]


# -- self-checking payloads --------------------------------------------------------


def make_payload(tag: str, size: int) -> bytes:
    """``size`` bytes starting with ``tag|size|`` and a body derived from the tag."""
    head = f"{tag}|{size}|".encode()
    if size < len(head):
        raise ValueError(f"payload of {size} bytes cannot hold its header {head!r}")
    seed = hashlib.sha256(tag.encode()).digest()
    body_len = size - len(head)
    body = (seed * (body_len // len(seed) + 1))[:body_len]
    return head + body


def check_payload(data: Any) -> str:
    """The tag of a complete payload; AssertionError for anything else."""
    assert isinstance(data, bytes), f"expected bytes, got {type(data).__name__}"
    parts = data.split(b"|", 2)
    assert len(parts) == 3, f"no payload header in {data[:40]!r}"
    tag = parts[0].decode()
    assert int(parts[1]) == len(data), (
        f"payload {tag!r} is {len(data)} bytes, header says {int(parts[1])}: torn"
    )
    assert data == make_payload(tag, len(data)), f"payload {tag!r} has a damaged body: torn"
    return tag


# -- plumbing ----------------------------------------------------------------------


def write_json(path: str, value: Any) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def local(root: str | Path) -> Where:
    return {"kind": "local", "root": str(root)}


def make_backend(where: Where) -> Backend:
    """The backend ``where`` names, built from plain strings."""
    kind = where["kind"]
    if kind == "local":
        return LocalBackend(where["root"])
    if kind == "s3":
        from registry.backends.s3 import S3Backend

        return S3Backend(
            where["bucket"],
            endpoint=where["endpoint"],
            access_key=where["access_key"],
            secret_key=where["secret_key"],
            prefix=where["prefix"],
        )
    if kind == "gcs":
        from registry.backends.gcs import GCSBackend

        return GCSBackend(
            bucket_name=where["bucket"], prefix=where["prefix"], endpoint=where["endpoint"]
        )
    raise ValueError(f"unknown kind of backend {kind!r}")


def open_registry(where: Where, **settings: Any) -> AsyncRegistry:
    if "cache_dir" in where:
        settings["cache_dir"] = where["cache_dir"]
    return AsyncRegistry(backend=make_backend(where), **settings)


def run_reporting(out: str, main: Callable[[], Awaitable[Any]]) -> None:
    """Run ``main`` on a fresh event loop; write its result, or the error, to ``out``."""
    try:
        result = asyncio.run(main())
    except BaseException as exc:
        # Reported, not raised: the test shows this traceback in its failure.
        write_json(out, {"crashed": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})
        return
    write_json(out, {"result": result})


def sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL cannot be handled


# -- races ---------------------------------------------------------------------------


def auto_saver(where: Where, proc: int, count: int, barrier: Any, out: str) -> None:
    """``count`` auto-increment saves of "race:auto"; reports [(tag, version)]."""

    async def main() -> list[list[str]]:
        saved: list[list[str]] = []
        async with open_registry(where, version_objects=True) as reg:
            await reg.list_versions("race:auto")  # open it (client, bucket) before the start
            barrier.wait(BARRIER_TIMEOUT)
            for i in range(count):
                tag = f"{proc}-{i}"
                # every fifth payload gets a uuid folder (> 64 KiB), the rest are inlined
                obj: Any = make_payload(tag, 100 * KIB) if i % 5 == 0 else tag
                version = await reg.save("race:auto", obj, metadata={"tag": tag})
                saved.append([tag, version])
        return saved

    run_reporting(out, main)


def explicit_saver(where: Where, proc: int, size: int, barrier: Any, out: str) -> None:
    """Save "race:explicit" version "1.0.0"; reports "won:<version>" or "conflict"."""

    async def main() -> str:
        payload = make_payload(f"writer-{proc}", size)
        async with open_registry(where) as reg:
            await reg.has_object("race:explicit")
            barrier.wait(BARRIER_TIMEOUT)
            try:
                version = await reg.save("race:explicit", payload, version="1.0.0")
            except RegistryVersionConflict:
                return "conflict"
            return f"won:{version}"

    run_reporting(out, main)


def head_racer(where: Where, proc: int, count: int, barrier: Any, out: str) -> None:
    """Saves of "race:head": even processes auto-increment, odd ones save an
    explicit version just above the latest they read. After each save, the
    latest version must be at least the one saved (the name's head never
    hides a committed version). Reports [[saved, latest seen after]]."""
    from registry.core.versions import Version

    async def main() -> list[list[str]]:
        seen: list[list[str]] = []
        async with open_registry(where, version_objects=True) as reg:
            await reg.has_object("race:head")
            barrier.wait(BARRIER_TIMEOUT)
            for i in range(count):
                if proc % 2 == 0:
                    version = await reg.save("race:head", f"{proc}-{i}")
                else:
                    try:
                        top = (await reg.info("race:head", "latest"))["version"]
                    except RegistryObjectNotFound:
                        top = "0"
                    explicit = f"{Version(top).major}.{1000 * proc + i + 1}"
                    version = await reg.save("race:head", f"{proc}-{i}", version=explicit)
                latest = (await reg.info("race:head", "latest"))["version"]
                assert Version(latest) >= Version(version), f"saved {version}, latest {latest}"
                seen.append([version, latest])
        return seen

    run_reporting(out, main)


def die_before_head(root: str, name: str) -> None:
    """Auto-save ``name`` and SIGKILL this process after the commit, before
    the name's head follows it."""
    from registry.backends import local as local_backend
    from registry.core import heads

    async def die(*args: Any, **kwargs: Any) -> Any:
        sigkill_self()

    local_backend.HEAD_SLACK = 1  # write the head after this save, as remote stores do
    heads.write = die  # type: ignore[assignment]

    async def main() -> None:
        async with open_registry(local(root), version_objects=True) as reg:
            await reg.save(name, "committed, head behind")

    asyncio.run(main())


def overwrite_payload(counter: int) -> bytes:
    """The value of the ``counter``-th overwrite: every third one small (inlined),
    the others 100-300 KiB (uuid folder)."""
    if counter % 3 == 0:
        size = 200 + (counter * 37) % 800
    else:
        size = 100 * KIB + (counter * 7919) % (200 * KIB)
    return make_payload(str(counter), size)


def overwriter(where: Where, first: int, last: int, barrier: Any, out: str) -> None:
    """Overwrite "race:mutable" with counters first..last."""

    async def main() -> int:
        async with open_registry(where, mutable=True) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            for counter in range(first, last + 1):
                await reg.save("race:mutable", overwrite_payload(counter), on_conflict="overwrite")
        return last

    run_reporting(out, main)


def reader(where: Where, barrier: Any, stop: Any, out: str, verify: Verify = "integrity") -> None:
    """Load "race:mutable" until ``stop`` is set; report counters seen and errors."""

    async def main() -> dict[str, Any]:
        counters: list[int] = []
        errors: list[str] = []
        async with open_registry(where) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            while not stop.is_set() or not counters:
                try:
                    value = await reg.load("race:mutable", verify=verify)
                    counters.append(int(check_payload(value)))
                except Exception as exc:  # recorded, asserted on by the test
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        break
        return {"counters": counters, "errors": errors}

    run_reporting(out, main)


def spaced_saver(where: Where, count: int, gap: float, barrier: Any, out: str) -> None:
    """``count`` auto-increment saves of "race:spaced" (object = its index),
    each after ``gap`` seconds of quiet; reports [(index, monotonic time the
    save returned)]."""

    async def main() -> list[list[float]]:
        done: list[list[float]] = []
        async with open_registry(where, version_objects=True) as reg:
            barrier.wait(BARRIER_TIMEOUT)
            for i in range(count):
                await asyncio.sleep(gap)
                await reg.save("race:spaced", i)
                done.append([i, time.monotonic()])
        return done

    run_reporting(out, main)


def latest_reader(where: Where, barrier: Any, stop: Any, out: str) -> None:
    """Load the latest "race:spaced" until ``stop`` is set; reports, per value
    seen, the monotonic time the last load that returned it started."""

    async def main() -> dict[str, float]:
        last_start: dict[str, float] = {}
        async with open_registry(where, version_objects=True) as reg:
            barrier.wait(BARRIER_TIMEOUT)
            while not stop.is_set():
                started = time.monotonic()
                value = await reg.load("race:spaced")
                last_start[str(value)] = started
        return last_start

    run_reporting(out, main)


def janitor_loop(where: Where, grace: float, barrier: Any, stop: Any, out: str) -> None:
    """Run the janitor back to back until ``stop`` is set."""

    async def main() -> dict[str, Any]:
        runs = 0
        removed: list[str] = []
        async with open_registry(where) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            while not stop.is_set():
                report = await reg.janitor(grace=grace)
                removed.extend(report.removed)
                runs += 1
                await asyncio.sleep(0.01)
        return {"runs": runs, "removed": removed}

    run_reporting(out, main)


# -- crashes -------------------------------------------------------------------------


def crash_payload(seq: int, tag: str) -> bytes:
    """Mostly 200 KiB (uuid folder via temp file + rename) and small (inlined)
    values, and now and then 9 MiB (streamed in place into the uuid folder)."""
    if seq % 7 == 6:
        size = 9 * MIB
    elif seq % 2 == 0:
        size = 200 * KIB
    else:
        size = 1 * KIB + seq % 100
    return make_payload(tag, size)


def crash_writer(root: str, run: int, progress: str) -> None:
    """Auto-save "crash:auto" forever, appending "version tag" to ``progress``
    after each save returns. The test kills it with SIGKILL."""

    async def main(log: TextIO) -> None:
        async with open_registry(local(root), version_objects=True) as reg:
            seq = 0
            while True:
                tag = f"run{run}-{seq}"
                version = await reg.save(
                    "crash:auto", crash_payload(seq, tag), metadata={"tag": tag}
                )
                log.write(f"{version} {tag}\n")
                log.flush()
                seq += 1

    with open(progress, "a") as log:
        asyncio.run(main(log))


def crash_overwriter(root: str, first: int, progress: str) -> None:
    """Overwrite "crash:mutable" with counters from ``first`` on, forever,
    appending each counter to ``progress`` once its save has returned."""

    async def main(log: TextIO) -> None:
        async with open_registry(local(root), mutable=True) as reg:
            counter = first
            while True:
                await reg.save("crash:mutable", overwrite_payload(counter), on_conflict="overwrite")
                log.write(f"{counter}\n")
                log.flush()
                counter += 1

    with open(progress, "a") as log:
        asyncio.run(main(log))


CRASH_POINTS = ("before-commit", "during-meta-write", "during-artifact-write")


def die_at(root: str, point: str, name: str, size: int) -> None:
    """Save ``name`` and SIGKILL this process at a chosen point of the save.

    before-commit: artifacts fully written, metadata not yet started.
    during-meta-write: metadata temp file written and fsynced, not yet linked.
    during-artifact-write: artifact temp file written, not yet renamed.
    """
    from registry.core import mvcc

    if point == "before-commit":

        async def die(*args: Any, **kwargs: Any) -> Any:
            sigkill_self()

        mvcc.commit_auto = die  # type: ignore[assignment]
        mvcc.commit_explicit = die  # type: ignore[assignment]
    elif point in ("during-meta-write", "during-artifact-write"):
        folder = "meta" if point == "during-meta-write" else "objects"
        original = LocalBackend._write_temp

        def write_temp_then_die(
            self: LocalBackend,
            path: Path,
            data: bytes | None,
            src: Path | None,
            durable: bool = True,
        ) -> tuple[Path, list[Path], os.stat_result]:
            written = original(self, path, data, src, durable)
            if path.relative_to(self.root).parts[0] == folder:
                sigkill_self()
            return written

        LocalBackend._write_temp = write_temp_then_die  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown crash point {point!r}; use one of {CRASH_POINTS}")

    async def main() -> None:
        async with open_registry(local(root), version_objects=True) as reg:
            await reg.save(name, make_payload(name, size))

    asyncio.run(main())


# -- used by the tests (parent side) -------------------------------------------------

PROCESS_TIMEOUT = 45.0


def spawn_context() -> Any:
    return multiprocessing.get_context("spawn")


def worker_context() -> Any:
    """The context remote races start their workers with: "forkserver".

    The fork server imports this module once and loads the client libraries
    (botocore's S3 models cost ~1.5 s of CPU in a fresh interpreter); each
    worker is a fork of that clean server, never of the test process. Eight
    workers on a 2-core machine then start in well under a second instead of
    ~10 s. "__main__" is preloaded too, so a worker does not re-import the
    test runner's main script (pytest) on its own.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


def _warm_up() -> None:
    """Import both client libraries and load the S3 service model and endpoint
    rules into the botocore loader the S3 backend shares between sessions (one
    client, opened and closed without a request)."""
    import registry.backends.gcs  # noqa: F401
    from registry.backends.s3 import S3Backend

    backend = S3Backend("warm-up", endpoint="http://127.0.0.1:9", access_key="-", secret_key="-")

    async def make_client() -> None:
        async with backend._new_client():
            pass

    asyncio.run(make_client())


def join_all(procs: list[Any], timeout: float = PROCESS_TIMEOUT) -> None:
    """Wait for every process; kill them all and fail if one hangs or fails."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    hung = [p.name for p in procs if p.is_alive()]
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    assert not hung, f"processes {hung} still running after {timeout}s: a hang"
    failed = {p.name: p.exitcode for p in procs if p.exitcode != 0}
    assert not failed, f"processes exited with errors: {failed}"


def read_report(out: str) -> Any:
    """The result a worker wrote with ``run_reporting``; fails on its error."""
    with open(out) as f:
        report = json.load(f)
    assert "crashed" not in report, f"worker {out} failed:\n{report['crashed']}"
    return report["result"]


def _in_fork_server() -> bool:
    # the fork server runs as ``python -c "from multiprocessing.forkserver import main; ..."``
    return sys.argv == ["-c"] and "multiprocessing.forkserver" in sys.modules


if _in_fork_server():
    _warm_up()


def first_racer(where: Where, proc: int, count: int, barrier: Any, out: str) -> None:
    """The first saves of ``count`` new names "race:first-<i>", all racing:
    process 0 saves version "1" (it raises no head), 1 auto-increments, 2
    saves "0.5" (it creates the head, below "1"). After each save, "latest"
    must be at least the version saved. Reports [[name, saved or
    "conflict", latest seen after]]."""
    from registry.core.versions import Version

    async def main() -> list[list[str]]:
        seen: list[list[str]] = []
        async with open_registry(where, version_objects=True) as reg:
            await reg.has_object("race:first-0")
            barrier.wait(BARRIER_TIMEOUT)
            for i in range(count):
                name = f"race:first-{i}"
                try:
                    if proc % 3 == 1:
                        version = await reg.save(name, f"{proc}-{i}")
                    else:
                        explicit = "1" if proc % 3 == 0 else "0.5"
                        version = await reg.save(name, f"{proc}-{i}", version=explicit)
                except RegistryVersionConflict:
                    seen.append([name, "conflict", ""])
                    continue
                latest = (await reg.info(name, "latest"))["version"]
                assert Version(latest) >= Version(version), (
                    f"{name}: saved {version}, latest {latest}"
                )
                seen.append([name, version, latest])
        return seen

    run_reporting(out, main)
