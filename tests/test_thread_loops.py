"""Reads of a local registry through the sync facade run on an event loop owned
by the calling thread (no hop to the runner thread); everything else, and
every call made inside a running loop, still crosses to the runner."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any, ClassVar

import registry._runner as runner_module
from registry import Materializer, MemoryBackend, Registry
from registry.core.types import FileEntry
from registry.materializers.base import write_bytes
from registry.testing.counting import CountingBackend

RUNNER_THREAD_NAME = "registry-runner"


async def _where() -> tuple[str, asyncio.AbstractEventLoop]:
    return threading.current_thread().name, asyncio.get_running_loop()


def test_reads_of_a_local_registry_run_in_the_calling_thread(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    reg.save("a", {"x": 1})
    name, loop = reg._run(_where())
    assert name == threading.current_thread().name
    assert reg._run(_where())[1] is loop  # the thread keeps its loop between calls
    assert reg.load("a") == {"x": 1}

    seen: list[tuple[str, Any]] = []

    def other() -> None:
        seen.append(reg._run(_where()))
        assert reg.load("a") == {"x": 1}

    thread = threading.Thread(target=other, name="reader")
    thread.start()
    thread.join(10)
    assert seen[0][0] == "reader" and seen[0][1] is not loop


def test_inside_a_running_loop_reads_cross_to_the_runner(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    reg.save("a", 1)

    async def main() -> tuple[str, Any]:
        assert reg.load("a") == 1
        return reg._run(_where())

    assert asyncio.run(main())[0] == RUNNER_THREAD_NAME


def test_backends_with_loop_bound_state_use_the_runner() -> None:
    reg = Registry(backend=MemoryBackend())
    reg.save("a", 1)
    assert reg._run(_where())[0] == RUNNER_THREAD_NAME
    assert reg.load("a") == 1


def test_a_threads_loop_is_closed_when_the_thread_ends(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.save("a", 1)
    loops: list[asyncio.AbstractEventLoop] = []

    def reader() -> None:
        assert reg.load("a") == 1
        own = runner_module._own.loop
        assert own is not None
        loops.append(own.loop)

    thread = threading.Thread(target=reader)
    thread.start()
    thread.join(10)
    gc.collect()
    assert loops and loops[0].is_closed()


class WhereLoaded(Materializer):
    """A folder materializer that records the thread its load runs in."""

    threads: ClassVar[list[str]] = []

    def save(self, obj: Any, folder: Path) -> dict[str, FileEntry]:
        return {"value.txt": write_bytes(folder / "value.txt", str(obj).encode())}

    def load(self, folder: Path, cls: type | None) -> Any:
        WhereLoaded.threads.append(threading.current_thread().name)
        return (folder / "value.txt").read_text()


def test_a_single_load_runs_inline_and_a_batch_on_the_runner(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.save("a", "x" * 100, materializer=WhereLoaded)
    reg.save("b", "y", materializer=WhereLoaded)
    WhereLoaded.threads.clear()
    assert reg.load("a") == "x" * 100
    assert WhereLoaded.threads == [threading.current_thread().name]  # no thread hop
    WhereLoaded.threads.clear()
    assert reg.load(["a", "b"]).results == ["x" * 100, "y"]
    # a batch runs on the runner loop, its loads in its (warm) worker threads
    assert threading.current_thread().name not in WhereLoaded.threads


def test_cache_hits_of_a_remote_registry_load_in_the_calling_thread(tmp_path: Path) -> None:
    backend = CountingBackend(MemoryBackend(), remote=True)
    reg = Registry(backend=backend, version_objects=True, cache_dir=tmp_path / "cache")
    reg.save("a", "x", version="1", materializer=WhereLoaded)  # written through the cache
    cold = Registry(backend=backend, cache_dir=tmp_path / "cold")
    here = threading.current_thread().name
    backend.reset()
    WhereLoaded.threads.clear()
    assert reg.load("a", version="1") == "x"
    assert WhereLoaded.threads == [here] and not backend.counts  # no hop, no request
    assert cold.load("a", version="1") == "x"  # a miss crosses: the clients live there
    assert cold.load("a", version="1") == "x"  # then it is cached
    assert WhereLoaded.threads[0::2] == [here, here] and WhereLoaded.threads[1] != here
    WhereLoaded.threads.clear()
    backend.reset()
    # what must ask the backend crosses too, hit or not
    assert reg.load("a") == "x"  # "latest" is resolved on the backend
    assert reg.load("a", version="1", verify="full") == "x"
    assert here not in WhereLoaded.threads and backend.counts["get"] >= 2


def test_a_damaged_cache_hit_is_fetched_again_by_the_runner(tmp_path: Path) -> None:
    backend = CountingBackend(MemoryBackend(), remote=True)
    reg = Registry(backend=backend, cache_dir=tmp_path / "cache")
    reg.save("a", "x" * 10, materializer=WhereLoaded)
    assert reg.load("a") == "x" * 10
    (file,) = (tmp_path / "cache").rglob("value.txt")
    file.write_text("y" * 10)
    WhereLoaded.threads.clear()
    backend.reset()
    assert reg.load("a") == "x" * 10  # the hit fails its check: dropped and fetched
    here = threading.current_thread().name
    assert WhereLoaded.threads[0] != here and backend.counts["get_file"] == 1
    assert reg.load("a", verify="none") == "x" * 10  # sound again, and a hit
    assert WhereLoaded.threads[1] == here
