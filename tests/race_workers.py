"""Worker functions for the multi-process race and crash tests.

They run in fresh interpreters (multiprocessing "spawn"), so they live in an
importable module, take only picklable arguments and report back through small
JSON files (a killed process cannot return anything; a file it wrote before
dying still tells what it did).

Payloads are self-checking: ``make_payload(tag, size)`` carries its own tag and
length, and ``check_payload`` rejects anything truncated, padded or mixed from
two writes, so a torn read cannot pass for a value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from registry import AsyncRegistry
from registry.backends.local import LocalBackend
from registry.exceptions import RegistryVersionConflict

KIB = 1024
MIB = 1024 * KIB
BARRIER_TIMEOUT = 60.0


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


def open_registry(root: str, **settings: Any) -> AsyncRegistry:
    return AsyncRegistry(backend=LocalBackend(root), **settings)


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


def auto_saver(root: str, proc: int, count: int, barrier: Any, out: str) -> None:
    """``count`` auto-increment saves of "race:auto"; reports [(tag, version)]."""

    async def main() -> list[list[str]]:
        saved: list[list[str]] = []
        async with open_registry(root, version_objects=True) as reg:
            await reg.list_versions("race:auto")  # open the registry before the start line
            barrier.wait(BARRIER_TIMEOUT)
            for i in range(count):
                tag = f"{proc}-{i}"
                # Every fifth payload is big enough for a uuid folder; the rest
                # are inlined in the metadata.
                obj: Any = make_payload(tag, 100 * KIB) if i % 5 == 0 else tag
                version = await reg.save("race:auto", obj, metadata={"tag": tag})
                saved.append([tag, version])
        return saved

    run_reporting(out, main)


def explicit_saver(root: str, proc: int, size: int, barrier: Any, out: str) -> None:
    """Save "race:explicit" version "1.0.0"; reports "won:<version>" or "conflict"."""

    async def main() -> str:
        payload = make_payload(f"writer-{proc}", size)
        async with open_registry(root) as reg:
            await reg.has_object("race:explicit")
            barrier.wait(BARRIER_TIMEOUT)
            try:
                version = await reg.save("race:explicit", payload, version="1.0.0")
            except RegistryVersionConflict:
                return "conflict"
            return f"won:{version}"

    run_reporting(out, main)


def overwrite_payload(counter: int) -> bytes:
    """The value of the ``counter``-th overwrite: every third one small (inlined),
    the others 100-300 KiB (uuid folder)."""
    if counter % 3 == 0:
        size = 200 + (counter * 37) % 800
    else:
        size = 100 * KIB + (counter * 7919) % (200 * KIB)
    return make_payload(str(counter), size)


def overwriter(root: str, first: int, last: int, barrier: Any, out: str) -> None:
    """Overwrite "race:mutable" with counters first..last."""

    async def main() -> int:
        async with open_registry(root, mutable=True) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            for counter in range(first, last + 1):
                await reg.save("race:mutable", overwrite_payload(counter), on_conflict="overwrite")
        return last

    run_reporting(out, main)


def reader(root: str, barrier: Any, stop: Any, out: str) -> None:
    """Load "race:mutable" until ``stop`` is set; report counters seen and errors."""

    async def main() -> dict[str, Any]:
        counters: list[int] = []
        errors: list[str] = []
        async with open_registry(root) as reg:
            await reg.has_object("race:mutable")
            barrier.wait(BARRIER_TIMEOUT)
            while not stop.is_set() or not counters:
                try:
                    counters.append(int(check_payload(await reg.load("race:mutable"))))
                except Exception as exc:  # recorded, asserted on by the test
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        break
        return {"counters": counters, "errors": errors}

    run_reporting(out, main)


def janitor_loop(root: str, grace: float, barrier: Any, stop: Any, out: str) -> None:
    """Run the janitor back to back until ``stop`` is set."""

    async def main() -> dict[str, Any]:
        runs = 0
        removed: list[str] = []
        async with open_registry(root) as reg:
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
        async with open_registry(root, version_objects=True) as reg:
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
        async with open_registry(root, mutable=True) as reg:
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
            self: LocalBackend, path: Path, data: bytes | None, src: Path | None
        ) -> Path:
            tmp = original(self, path, data, src)
            if path.relative_to(self.root).parts[0] == folder:
                sigkill_self()
            return tmp

        LocalBackend._write_temp = write_temp_then_die  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown crash point {point!r}; use one of {CRASH_POINTS}")

    async def main() -> None:
        async with open_registry(root, version_objects=True) as reg:
            await reg.save(name, make_payload(name, size))

    asyncio.run(main())


# -- used by the tests (parent side) -------------------------------------------------

PROCESS_TIMEOUT = 45.0


def spawn_context() -> Any:
    import multiprocessing

    return multiprocessing.get_context("spawn")


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
