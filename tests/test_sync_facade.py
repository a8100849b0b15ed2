"""The sync facade ``Registry`` and its runner thread (DESIGN §8).

``Registry`` runs every ``AsyncRegistry`` method on one process-wide
event-loop thread. Each test below proves one property of that design with a
check that can fail. Anything that could hang (a deadlock, a stuck child
process) is bounded by a timeout so that it fails instead of hanging: calls
that might deadlock run in a helper thread that is joined with a timeout,
subprocesses get ``timeout=``, forked children are killed after a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import io
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

import registry._runner as runner_module
from registry import (
    AsyncRegistry,
    BatchResult,
    BlobMaterializer,
    Materializer,
    MemoryBackend,
    Registry,
    RegistryObjectNotFound,
    RegistryVersionConflict,
)
from registry._runner import Runner, get_runner
from registry.core.types import FileEntry
from registry.materializers.base import write_bytes
from tests.facade_checks import check_mirror

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER_THREAD_NAME = "registry-runner"

pytestmark = pytest.mark.timeout(60)


# -- helpers -------------------------------------------------------------------------


def call_with_timeout(fn: Callable[[], T], timeout: float = 15.0, what: str = "call") -> T:
    """Run ``fn`` in a daemon thread; fail (instead of hanging) if it does not return."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="facade-test-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {timeout:.0f}s: deadlock or hang")
    if "error" in box:
        raise box["error"]
    return typing.cast(T, box["value"])


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: the working copy importable, no asyncio debug, and
    every default location (REGISTRY_HOME, XDG, HOME) inside ``tmp_path``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONWARNINGS", "PYTHONSTARTUP")
    }
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    home = tmp_path / "home"
    env["REGISTRY_HOME"] = str(home / "registry")
    env["XDG_DATA_HOME"] = str(home / "data")
    env["XDG_CACHE_HOME"] = str(home / "cache")
    env["REGISTRY_CACHE"] = str(home / "cache" / "registry")
    env["HOME"] = str(home)
    env["PYTHONWARNINGS"] = "always"
    env["PYTHONUNBUFFERED"] = "1"
    return env


CAPTURE_TEXT: Any = {"capture_output": True, "text": True, "check": False}


def script_command(code: str, *args: str) -> list[str]:
    return [sys.executable, "-W", "error::ResourceWarning", "-c", textwrap.dedent(code), *args]


def run_script(
    code: str, tmp_path: Path, *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    command, env = script_command(code, *args), subprocess_env(tmp_path)
    return subprocess.run(command, cwd=tmp_path, env=env, timeout=timeout, **CAPTURE_TEXT)


def last_json_line(stdout: str) -> Any:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON result line in stdout:\n{stdout}"
    return json.loads(lines[-1])


def run_in_fork(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``fn`` in a forked child and return its JSON-able result.

    The child never returns into pytest (``os._exit``); the parent kills it
    after ``timeout`` seconds so a hang fails the test.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_fd)
            try:
                payload: dict[str, Any] = {"ok": fn()}
            except BaseException as exc:
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps(payload, default=repr).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    status = 0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            pytest.fail(f"forked child did not finish within {timeout:.0f}s (hang after fork)")
        time.sleep(0.01)
    with os.fdopen(read_fd, "rb") as result:  # the child has exited: read to EOF
        data = result.read()
    assert os.waitstatus_to_exitcode(status) == 0, f"forked child failed, status {status}"
    assert data, "forked child wrote no result"
    payload = json.loads(data)
    assert "error" not in payload, f"forked child raised {payload['error']}"
    return payload["ok"]


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _tasks_on_loop() -> set[asyncio.Task[Any]]:
    """Every task on the runner loop except the one asking."""
    return asyncio.all_tasks() - {typing.cast("asyncio.Task[Any]", asyncio.current_task())}


def runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == RUNNER_THREAD_NAME and t.is_alive()]


@pytest.fixture(autouse=True)
def _defaults_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default locations (registry root, cache) point into tmp_path, never $HOME."""
    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "default-home"))
    monkeypatch.setenv("REGISTRY_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def private_runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    """A runner of the test's own, for tests that could deadlock a runner: a
    regression then strands only this loop, not the one the other tests use."""
    runner = Runner(get_runner().generation)
    monkeypatch.setattr(runner_module, "_runner", runner)
    yield runner
    probe = threading.Thread(target=lambda: runner.run(asyncio.sleep(0)), daemon=True)
    probe.start()
    probe.join(2)
    if not probe.is_alive():  # a deadlocked loop is left behind (a daemon thread)
        runner.shutdown()


class SlowMetaGetBackend(MemoryBackend):
    """Metadata reads of names not in ``fast`` take ``SLOW`` seconds and are
    counted while in flight, so that an abandoned iteration has loads in
    flight that must be cancelled."""

    SLOW = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.fast: set[str] = set()

    async def get(self, key: str) -> bytes:
        if key.startswith("meta/") and key.split("/")[1] not in self.fast:
            self.in_flight += 1
            try:
                await asyncio.sleep(self.SLOW)
            finally:
                self.in_flight -= 1
        return await super().get(key)


class GatedBackend(MemoryBackend):
    """Commits of names starting with ``gated`` wait until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    async def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        if key.startswith("meta/gated"):
            self.entered.set()
            # released from another thread: poll the threading.Event
            while not self.release.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return await super().put(key, data, **kwargs)


# Materializers that call back into the sync facade (see the re-entrancy tests).
_reentry_target: Registry | None = None


def load_seed_through_the_facade(seen: list[tuple[bool, str]]) -> Any:
    """What the re-entrant materializers do: load "seed" through the sync
    Registry, and record (on the runner's thread?, outcome) in ``seen``."""
    assert _reentry_target is not None
    on_runner = threading.current_thread().name == RUNNER_THREAD_NAME
    try:
        inner = _reentry_target.load("seed")
    except BaseException as exc:
        seen.append((on_runner, type(exc).__name__))
        raise
    seen.append((on_runner, "ok"))
    return inner


class ReentrantBlob(BlobMaterializer):
    """A tiny blob: its ``dumps`` runs on the event loop (no thread hop) and
    calls the sync Registry from there."""

    filename = "data.txt"
    seen: ClassVar[list[tuple[bool, str]]] = []

    def estimate_size(self, obj: Any) -> int | None:
        return 1

    def dumps(self, obj: Any) -> bytes:
        inner = load_seed_through_the_facade(ReentrantBlob.seen)
        return f"{obj}+{inner}".encode()

    def loads(self, data: bytes, cls: type | None) -> Any:
        return data.decode()


class ReentrantFolder(Materializer):
    """A folder materializer (run in a worker thread) that calls the sync Registry."""

    seen: ClassVar[list[tuple[bool, str]]] = []

    def save(self, obj: Any, folder: Path) -> dict[str, FileEntry]:
        inner = load_seed_through_the_facade(ReentrantFolder.seen)
        return {"value.txt": write_bytes(folder / "value.txt", f"{obj}+{inner}".encode())}

    def load(self, folder: Path, cls: type | None) -> Any:
        return (folder / "value.txt").read_text()


# -- 1. a plain script -------------------------------------------------------------

PLAIN_SCRIPT = """
    import json, sys
    from registry import Registry

    reg = Registry(sys.argv[1], version_objects=True)
    out = {"versions": [reg.save("cfg", {"lr": 0.1, "layers": [1, 2]}), reg.save("cfg", {"lr": 0.2})]}
    out["latest"] = reg.load("cfg")
    out["first"] = reg.load("cfg", version="1")
    reg["note"] = "hello"
    out["note"] = reg["note"]
    out["names"] = list(reg)
    default = Registry()  # the default location: REGISTRY_HOME, set by the test
    default.save("x", [1, 2, 3])
    out["default"] = default.load("x")
    out["default_uri"] = default.backend.uri
    print(json.dumps(out))
"""


def test_works_in_a_plain_script(tmp_path: Path) -> None:
    location = tmp_path / "reg"
    started = time.monotonic()
    proc = run_script(PLAIN_SCRIPT, tmp_path, str(location))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = last_json_line(proc.stdout)
    assert out["versions"] == ["1", "2"]
    assert out["latest"] == {"lr": 0.2}
    assert out["first"] == {"lr": 0.1, "layers": [1, 2]}
    assert out["note"] == "hello"
    assert out["names"] == ["cfg", "note"]
    assert out["default"] == [1, 2, 3]
    home = tmp_path / "home" / "registry"
    assert out["default_uri"] == f"file://{home}"
    assert (location / "_registry.json").is_file()
    assert (home / "_registry.json").is_file()
    assert proc.stderr == "", proc.stderr
    assert elapsed < 15, f"a trivial script took {elapsed:.1f}s"


# -- 2. many threads at once ---------------------------------------------------------


def test_sixteen_threads_save_and_load_distinct_names(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    threads, per_thread = 16, 4
    barrier = threading.Barrier(threads)

    def value(i: int, j: int) -> dict[str, Any]:
        return {"thread": i, "item": j, "text": f"{i}-{j}" * (j + 1), "list": list(range(i))}

    def work(i: int) -> dict[str, Any]:
        barrier.wait(timeout=10)  # all threads call the facade at the same moment
        loaded: dict[str, Any] = {}
        for j in range(per_thread):
            name = f"t{i}.item{j}"
            assert reg.save(name, value(i, j)) == "1"
            loaded[name] = reg.load(name)
            assert f"{name}@1" in reg
        return loaded

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(work, range(threads), timeout=30))

    expected = {f"t{i}.item{j}": value(i, j) for i in range(threads) for j in range(per_thread)}
    seen: dict[str, Any] = {}
    for loaded in results:
        seen.update(loaded)
    assert seen == expected
    assert reg.list_objects() == sorted(expected)
    batch = reg.load(sorted(expected))
    assert batch.ok and batch.results == [expected[n] for n in sorted(expected)]
    assert len(runner_threads()) == 1, "all threads must share one runner thread"


def test_sixteen_threads_auto_saving_one_name_get_distinct_versions(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    threads = 16
    barrier = threading.Barrier(threads)

    def work(i: int) -> tuple[str, int]:
        barrier.wait(timeout=10)
        return reg.save("shared", {"writer": i}), i

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        claimed = list(pool.map(work, range(threads), timeout=30))

    versions = [v for v, _ in claimed]
    assert sorted(versions, key=int) == [str(n) for n in range(1, threads + 1)], versions
    assert reg.list_versions("shared") == [str(n) for n in range(1, threads + 1)]
    for version, writer in claimed:  # every version holds what its saver wrote
        assert reg.load("shared", version=version) == {"writer": writer}


def test_every_call_runs_on_one_loop_thread(tmp_path: Path) -> None:
    """One process-wide loop serves all threads and callers (no loop per call,
    no nest_asyncio)."""
    reg = Registry(tmp_path / "reg")
    seen: list[tuple[asyncio.AbstractEventLoop, str]] = []
    numbers = iter(range(100))

    async def where() -> tuple[asyncio.AbstractEventLoop, str]:
        return asyncio.get_running_loop(), threading.current_thread().name

    def probe() -> None:
        reg.save(f"n{next(numbers)}", 1)
        seen.append(get_runner().run(where()))

    probe()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(probe) for _ in range(4)]:
            future.result(timeout=10)

    async def in_loop() -> None:
        probe()

    asyncio.run(in_loop())
    assert len(seen) == 6
    assert len({id(loop) for loop, _ in seen}) == 1
    assert {name for _, name in seen} == {RUNNER_THREAD_NAME}
    assert not seen[0][0].is_closed()
    assert "nest_asyncio" not in sys.modules


# -- 3. inside a running event loop ----------------------------------------------------


def test_works_when_called_inside_a_running_event_loop(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)

    async def load_in_task() -> Any:
        return reg.load("nb", version="1")

    async def main() -> dict[str, Any]:  # a notebook cell: sync calls inside a running loop
        loop = asyncio.get_running_loop()
        out: dict[str, Any] = {"v1": reg.save("nb", {"cell": 1})}
        out["v2"] = reg.save("nb", {"cell": 2})
        out["latest"] = reg.load("nb")
        out["by_key"] = reg["nb@1"]
        out["versions"] = reg.list_versions("nb")
        out["in_task"] = await asyncio.create_task(load_in_task())
        out["loop_alive"] = await asyncio.sleep(0, result="still running")
        out["same_loop"] = asyncio.get_running_loop() is loop
        out["runner_is_other_loop"] = get_runner().run(_running_loop()) is not loop
        return out

    out = asyncio.run(main())
    assert out == {
        "v1": "1",
        "v2": "2",
        "latest": {"cell": 2},
        "by_key": {"cell": 1},
        "versions": ["1", "2"],
        "in_task": {"cell": 1},
        "loop_alive": "still running",
        "same_loop": True,
        "runner_is_other_loop": True,
    }
    assert reg.load("nb") == {"cell": 2}  # and still works after that loop closed


# -- 4. a call from the runner thread itself ------------------------------------------


def test_call_from_runner_thread_raises_instead_of_deadlocking(
    private_runner: Runner, tmp_path: Path
) -> None:
    reg = Registry(tmp_path / "reg")
    reg.save("x", 1)

    # (a) a coroutine running on the runner loop calls the sync facade
    async def reenter() -> Any:
        return reg.load("x")

    with pytest.raises(RuntimeError, match="deadlock"):
        call_with_timeout(lambda: get_runner().run(reenter()), what="re-entrant facade call")

    # (b) a plain callback on the runner loop calls Runner.run
    loop = get_runner().run(_running_loop())
    outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
    inner = asyncio.sleep(0, result="inner")

    def callback() -> None:
        try:
            outcome.set_result(get_runner().run(inner))
        except BaseException as exc:
            outcome.set_exception(exc)

    loop.call_soon_threadsafe(callback)
    try:
        error = outcome.exception(timeout=10)
    except concurrent.futures.TimeoutError:
        pytest.fail("Runner.run called on the runner thread deadlocked")
    assert isinstance(error, RuntimeError), error
    assert "thread" in str(error) and "AsyncRegistry" in str(error), str(error)
    # the refused coroutine is closed, not left to warn "never awaited"
    assert inspect.getcoroutinestate(inner) == inspect.CORO_CLOSED

    # the runner is still healthy afterwards
    assert call_with_timeout(lambda: reg.load("x"), what="load after refusal") == 1


def save_calling_the_facade(
    reg: Registry, materializer: type[ReentrantBlob] | type[ReentrantFolder]
) -> tuple[str | None, BaseException | None, bool, str]:
    """Save with a materializer that calls ``reg`` back: (version, error, whether
    the materializer ran on the runner's loop thread, its inner call's outcome)."""
    global _reentry_target
    reg.save("seed", "s")
    _reentry_target = reg
    materializer.seen.clear()
    try:
        try:
            version: str | None = call_with_timeout(
                lambda: reg.save("obj", "v", materializer=materializer),
                what=f"save with {materializer.__name__} calling the facade",
            )
            error: BaseException | None = None
        except Exception as exc:
            version, error = None, exc
    finally:
        _reentry_target = None
    assert materializer.seen, "the materializer was never called"
    on_runner, inner_outcome = materializer.seen[0]
    return version, error, on_runner, inner_outcome


def test_materializer_on_the_loop_calling_the_facade_gets_a_clear_error(
    private_runner: Runner, tmp_path: Path
) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    version, error, on_runner, inner_outcome = save_calling_the_facade(reg, ReentrantBlob)
    if on_runner:  # on the loop thread: must be refused clearly
        assert inner_outcome == "RuntimeError"
        assert isinstance(error, RuntimeError) and "deadlock" in str(error), repr(error)
    else:  # (if the core ever moves it to a worker thread, it simply works)
        assert error is None and version == "1"
        assert reg.load("obj") == "v+s"
    assert call_with_timeout(lambda: reg.load("seed")) == "s"


def test_materializer_in_a_worker_thread_may_call_the_facade(
    private_runner: Runner, tmp_path: Path
) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    version, error, on_runner, _ = save_calling_the_facade(reg, ReentrantFolder)
    if on_runner:
        assert isinstance(error, RuntimeError) and "deadlock" in str(error), repr(error)
    else:
        assert error is None, repr(error)
        assert version == "1"
        assert reg.load("obj") == "v+s"


# -- 5. exceptions keep their type ----------------------------------------------------


def test_exceptions_keep_their_type(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    assert reg.save("a", 1, version="1") == "1"

    with pytest.raises(RegistryObjectNotFound) as not_found:
        reg.load("missing")
    assert type(not_found.value) is RegistryObjectNotFound
    assert isinstance(not_found.value, KeyError)
    assert "missing" in str(not_found.value)
    with pytest.raises(KeyError):
        reg.load("a", version="7")
    with pytest.raises(KeyError):
        reg.delete("missing")

    with pytest.raises(RegistryVersionConflict) as conflict:
        reg.save("a", 2, version="1")
    assert type(conflict.value) is RegistryVersionConflict
    assert reg.load("a") == 1

    for bad in ("bad/name", "at@sign", "", "with space", ".."):
        with pytest.raises(ValueError, match="invalid object name"):
            reg.save(bad, 1)
    with pytest.raises(ValueError, match="invalid object name"):
        reg.load("bad/name")
    with pytest.raises(ValueError, match="invalid version"):
        reg.save("a", 1, version="not a version")

    # per-item errors of a batch keep their type as well
    batch = reg.load(["a", "missing", "bad/name"])
    assert isinstance(batch, BatchResult)
    assert batch.results[0] == 1 and batch.failed == [1, 2]
    assert type(batch.errors[1]) is RegistryObjectNotFound
    assert isinstance(batch.errors[2], ValueError)


# -- 6. Ctrl-C while waiting -----------------------------------------------------------

CTRL_C_SCRIPT = """
    import asyncio, json, sys, threading, time
    from pathlib import Path
    from registry import MemoryBackend, Registry

    state = {"cancelled": False, "finished": False}
    marker = Path(sys.argv[1])

    class SlowBackend(MemoryBackend):
        async def put(self, key, data, **kwargs):
            if key.startswith("meta/slow/"):
                marker.write_text("started")  # the parent sends SIGINT now
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    state["cancelled"] = True
                    await asyncio.sleep(0.3)  # cancellation cleanup takes a moment
                    raise
                finally:
                    state["finished"] = True
            return await super().put(key, data, **kwargs)

    reg = Registry(backend=SlowBackend())
    reg.save("warmup", 0)
    out = {}
    started = time.monotonic()
    try:
        reg.save("slow", 1)
        out["interrupted"] = False
    except KeyboardInterrupt:
        out["interrupted"] = True
    out["waited"] = time.monotonic() - started
    out["finished_when_raised"] = state["finished"]
    deadline = time.monotonic() + 5
    while not state["finished"] and time.monotonic() < deadline:
        time.sleep(0.01)
    out["cancelled"] = state["cancelled"]
    out["finished"] = state["finished"]
    out["committed"] = reg.get("slow", "absent")
    reg.save("after", 2)  # the registry keeps working after Ctrl-C
    out["after"] = reg.load("after")
    print(json.dumps(out), flush=True)
"""


def run_ctrl_c_script(tmp_path: Path) -> tuple[dict[str, Any], str, float]:
    """Start the script, send a real SIGINT once its slow save is in flight."""
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        script_command(CTRL_C_SCRIPT, str(marker)),
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=5)
                pytest.fail(f"slow save never started (rc={proc.returncode}):\n{out}\n{err}")
            time.sleep(0.01)
        time.sleep(0.05)  # let the main thread settle into its wait
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        stdout, stderr = proc.communicate(timeout=20)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"rc={proc.returncode}\n{stdout}\n{stderr}"
    return last_json_line(stdout), stderr, took


def test_ctrl_c_while_waiting_cancels_the_operation(tmp_path: Path) -> None:
    out, stderr, took = run_ctrl_c_script(tmp_path)
    assert out["interrupted"] is True, "KeyboardInterrupt did not reach the caller"
    assert out["waited"] < 10, f"Ctrl-C took {out['waited']:.1f}s to interrupt the wait"
    assert out["cancelled"] is True, "the operation on the runner loop was not cancelled"
    assert out["finished"] is True
    assert out["committed"] == "absent", "the interrupted save still committed"
    assert out["after"] == 2
    assert took < 10, f"the process took {took:.1f}s to finish after Ctrl-C"
    assert "Traceback" not in stderr and "Task was destroyed" not in stderr, stderr


def test_ctrl_c_returns_only_after_the_operation_stopped(tmp_path: Path) -> None:
    """When KeyboardInterrupt reaches the caller, the cancelled operation has
    finished unwinding (bounded by the runner's timeout), so nothing of it is
    still running behind the user's back (e.g. racing the next save)."""
    out, _, _ = run_ctrl_c_script(tmp_path)
    assert out["interrupted"] is True
    assert out["finished_when_raised"] is True, (
        "KeyboardInterrupt propagated while the cancelled operation was still running "
        "on the runner loop"
    )


# -- 7. fork ------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
def test_forked_child_can_use_a_registry_from_the_parent(tmp_path: Path) -> None:
    local = Registry(tmp_path / "reg", version_objects=True)
    memory = Registry(backend=MemoryBackend(), version_objects=True)
    assert local.save("parent", {"who": "parent"}) == "1"
    assert memory.save("parent", "p") == "1"  # the runner is running in the parent
    parent_generation = get_runner().generation

    def child() -> dict[str, Any]:
        return {
            "local_parent": local.load("parent"),
            "local_saved": local.save("child", {"who": "child"}),
            "local_child": local.load("child"),
            "memory_parent": memory.load("parent"),
            "memory_saved": memory.save("parent", "c"),
            "memory_versions": memory.list_versions("parent"),
            "new_runner": get_runner().generation != parent_generation,
            "runner_threads": len(runner_threads()),
        }

    out = run_in_fork(child)
    assert out == {
        "local_parent": {"who": "parent"},
        "local_saved": "1",
        "local_child": {"who": "child"},
        "memory_parent": "p",
        "memory_saved": "2",
        "memory_versions": ["1", "2"],
        "new_runner": True,
        "runner_threads": 1,
    }
    # the parent is unaffected and sees what the child wrote to disk
    assert local.load("child") == {"who": "child"}
    assert local.save("parent", {"who": "parent", "again": True}) == "2"
    assert memory.list_versions("parent") == ["1"]  # the child had its own copy
    assert get_runner().generation == parent_generation


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_another_thread_waits_on_the_runner(tmp_path: Path) -> None:
    backend = GatedBackend()
    reg = Registry(backend=backend, version_objects=True)
    reg.save("before", 1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(reg.save, "gated", "slow")  # blocks inside the runner loop
        try:
            assert backend.entered.wait(10), "the gated save never started"

            def child() -> list[Any]:
                return [reg.save("in-child", 2), reg.load("in-child"), reg.load("before")]

            assert run_in_fork(child) == ["1", 2, 1]
        finally:
            backend.release.set()
        assert pending.result(timeout=10) == "1"
    assert reg.load("gated") == "slow"


def _mp_child(reg: Registry, method: str, results: Any) -> None:
    try:
        version = reg.save(f"child-{method}", {"method": method})
        results.put(("ok", version, reg.load("parent"), reg.load(f"child-{method}")))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}", None, None))


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_multiprocessing_child_uses_the_registry(tmp_path: Path, method: str) -> None:
    """fork: the child inherits the Registry; spawn: it receives it pickled."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    reg = Registry(tmp_path / "reg", version_objects=True)
    reg.save("parent", [1, 2])
    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    proc = ctx.Process(target=_mp_child, args=(reg, method, results))
    proc.start()
    try:
        outcome = results.get(timeout=30)
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
            pytest.fail(f"{method} child did not exit")
    assert outcome == ("ok", "1", [1, 2], {"method": method}), outcome
    assert proc.exitcode == 0
    assert reg.load(f"child-{method}") == {"method": method}


# -- 8. pickling --------------------------------------------------------------------

FORBIDDEN_IN_PICKLE = (
    "asyncio",
    "_asyncio",
    "threading",
    "_thread",
    "concurrent",
    "anyio",
    "selectors",
    "socket",
    "weakref",
    "_weakrefset",
    "registry._runner",
)


class RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.globals: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        self.globals.append((module, name))
        return super().find_class(module, name)


@pytest.mark.parametrize("kind", ["local", "memory"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trips_as_configuration(tmp_path: Path, kind: str, protocol: int) -> None:
    if kind == "local":
        reg = Registry(tmp_path / "reg", version_objects=True)
    else:
        reg = Registry(backend=MemoryBackend(), version_objects=True)
    assert reg.save("a", {"x": 1}) == "1"
    assert reg.load("a") == {"x": 1}  # clients, limiters and the runner now exist

    data = pickle.dumps(reg, protocol=protocol)
    unpickler = RecordingUnpickler(data)
    clone = unpickler.load()

    leaked = [
        f"{module}.{name}"
        for module, name in unpickler.globals
        if module in FORBIDDEN_IN_PICKLE or module.split(".")[0] in FORBIDDEN_IN_PICKLE
    ]
    assert not leaked, f"the pickle holds runtime objects: {leaked}"
    assert not any("Runner" in name or "Lock" in name for _, name in unpickler.globals)
    assert b"registry-runner" not in data

    assert isinstance(clone, Registry) and clone is not reg
    assert clone.backend.uri == reg.backend.uri
    assert clone.load("a") == {"x": 1}
    assert clone.save("a", {"x": 2}) == "2"  # the configuration (version_objects) survived
    assert clone.version_objects is True
    if kind == "local":  # the same location: both see each other's writes
        assert reg.load("a") == {"x": 2}
    assert pickle.loads(pickle.dumps(clone)).load("a") == {"x": 2}


# -- 9. clean interpreter exit ----------------------------------------------------------

CLEAN_EXIT_SCRIPT = """
    import asyncio, sys, threading
    from concurrent.futures import ThreadPoolExecutor
    from registry import MemoryBackend, Registry

    class LoudBackend(MemoryBackend):
        async def aclose(self):
            print("aclose on", threading.current_thread().name, flush=True)
            await super().aclose()

    local = Registry(sys.argv[1], version_objects=True)
    memory = Registry(backend=LoudBackend())
    names = [f"n{i}" for i in range(10)]
    for i, name in enumerate(names):
        local.save(name, {"i": i, "pad": "x" * 100_000})  # above the inline limit: files
        memory[name] = i
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda n: local.load(n)["i"], names)) == list(range(10))

    async def main():
        return memory.load("n3")

    assert asyncio.run(main()) == 3
    for name, obj in local.iter_load(names, limit=2):
        break
    print("done", flush=True)
"""


def test_interpreter_exits_cleanly(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_script(CLEAN_EXIT_SCRIPT, tmp_path, str(tmp_path / "reg"))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout
    # the atexit hook closed the clients, on the runner loop, before stopping it
    assert f"aclose on {RUNNER_THREAD_NAME}" in proc.stdout, proc.stdout
    assert proc.stderr == "", f"warnings or tracebacks at exit:\n{proc.stderr}"
    assert elapsed < 10, f"exit took {elapsed:.1f}s"


UNFINISHED_ITER_SCRIPT = """
    import sys
    from registry import Registry

    reg = Registry(sys.argv[1])
    names = [f"n{i}" for i in range(20)]
    assert reg.save(names, [{"i": i, "pad": "x" * 100_000} for i in range(20)]).ok
    it = reg.iter_load(names, limit=4)  # still alive, half consumed, at exit
    print("first", next(it)[0], flush=True)
"""


def test_interpreter_exits_cleanly_with_an_unfinished_iter_load(tmp_path: Path) -> None:
    """A script that leaves a started ``iter_load`` in a global exits at once:
    the generator is finalized after the runner's atexit shutdown."""
    started = time.monotonic()
    try:
        proc = run_script(UNFINISHED_ITER_SCRIPT, tmp_path, str(tmp_path / "reg"), timeout=10)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the interpreter hung at exit (killed after 10s); stdout: {exc.stdout!r}")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "first n" in proc.stdout
    assert proc.stderr == "", f"warnings or tracebacks at exit:\n{proc.stderr}"
    assert elapsed < 10


# -- 10. same API as AsyncRegistry ---------------------------------------------------


def test_sync_and_async_expose_the_same_methods_and_signatures() -> None:
    # AsyncRegistry's public instance attributes may be properties on the facade
    attributes = {n for n in vars(AsyncRegistry(backend=MemoryBackend())) if n[0] != "_"}
    check_mirror(
        Registry,
        AsyncRegistry,
        only_async={"aclose"},
        only_sync={"close", "async_registry"},
        attributes=attributes,
        all_async=True,
    )


def test_sync_exposes_the_public_attributes_of_async(tmp_path: Path) -> None:
    """Every public attribute of an AsyncRegistry instance (set in __init__,
    not on the class) is readable on the facade with the same value."""
    config: dict[str, Any] = {"version_objects": True, "allow_pickle": False, "verify": "none"}
    aio = AsyncRegistry(tmp_path / "reg", **config)
    reg = Registry(tmp_path / "reg", **config)
    missing = sorted(n for n in vars(aio) if not n.startswith("_") and not hasattr(reg, n))
    assert not missing, f"Registry lacks AsyncRegistry's public attributes {missing}"
    for name in (n for n in vars(aio) if not n.startswith("_") and n != "backend"):
        assert getattr(reg, name) == getattr(aio, name), name
    assert reg.backend.uri == aio.backend.uri


# -- 11. the mapping interface -----------------------------------------------------------


def test_mapping_interface(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    assert len(reg) == 0 and list(reg) == [] and "x" not in reg

    reg["x"] = {"v": 1}
    reg["x"] = {"v": 2}
    reg["y@3.0"] = "explicit"
    assert reg["x"] == {"v": 2}
    assert reg["x@1"] == {"v": 1}
    assert reg["x@2"] == {"v": 2}
    assert reg["x@latest"] == {"v": 2}
    assert reg["y@3"] == "explicit"  # versions compare by value
    assert reg.list_versions("y") == ["3.0"]
    assert "x" in reg and "x@1" in reg and "x@2" in reg and "y@3" in reg
    assert "x@9" not in reg and "nope" not in reg
    assert 1 not in reg  # type: ignore[operator]
    assert len(reg) == 2
    assert list(reg) == ["x", "y"] == reg.keys()

    marker = object()
    assert reg.get("missing", marker) is marker
    assert reg.get("missing") is None
    assert reg.get("x@9", marker) is marker
    assert reg.get("x@1") == {"v": 1}
    with pytest.raises(KeyError):
        reg["missing"]
    with pytest.raises(KeyError):
        reg["x@9"]

    del reg["x@1"]
    assert "x@1" not in reg and "x" in reg and reg["x"] == {"v": 2}
    del reg["x"]
    assert "x" not in reg and "x@2" not in reg
    assert list(reg) == ["y"] and len(reg) == 1
    with pytest.raises(KeyError):
        del reg["x"]
    with pytest.raises(KeyError):
        del reg["missing"]
    reg["x"] = "reborn"  # a deleted version number is never handed out again
    assert reg.list_versions("x") == ["3"]

    # list keys are batches
    reg[["a", "b"]] = [10, 20]
    reg[["a"]] = [11]
    batch = reg[["a", "b", "a@1", "nope", "y@3"]]
    assert isinstance(batch, BatchResult)
    assert batch.results == [11, 20, 10, None, "explicit"]
    assert batch.failed == [3]
    assert isinstance(batch.errors[3], KeyError)
    assert isinstance(reg.has_object(["a", "nope"]), BatchResult)
    assert reg.has_object(["a", "nope"]).results == [True, False]
    del reg[["a@1", "b"]]
    assert "a@1" not in reg and "a@2" in reg and "b" not in reg
    assert reg[[]] == BatchResult([])


# -- 12. iter_load ---------------------------------------------------------------------


def test_iter_load_yields_every_pair(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", version_objects=True)
    names = [f"item{i}" for i in range(40)]
    batch = reg.save(names, [{"i": i} for i in range(40)])
    assert batch.ok
    pairs = call_with_timeout(lambda: list(reg.iter_load(names, limit=8)), what="iter_load")
    assert len(pairs) == 40
    assert dict(pairs) == {f"item{i}": {"i": i} for i in range(40)}
    assert list(reg.iter_load([])) == []
    with pytest.raises(RegistryObjectNotFound):
        call_with_timeout(lambda: list(reg.iter_load([*names[:5], "missing"])))


def test_iter_load_stopped_early_does_not_hang_or_leak() -> None:
    backend = SlowMetaGetBackend()
    reg = Registry(backend=backend)
    names = [f"item{i}" for i in range(60)]
    assert reg.save(names, list(range(60))).ok
    before = get_runner().run(_tasks_on_loop())

    def assert_cleaned_up(what: str) -> None:
        assert backend.in_flight == 0, f"{what}: loads still in flight"
        left = get_runner().run(_tasks_on_loop()) - before
        assert not left, f"{what}: tasks left on the runner loop: {left}"

    # item0 loads at once; the 7 other loads in flight take 2 s each
    backend.fast = {"item0"}

    def break_early() -> tuple[str, Any]:
        for pair in reg.iter_load(names, limit=8):
            return pair  # leaves the loop with 7 loads in flight
        raise AssertionError("iter_load yielded nothing")

    started = time.monotonic()
    assert call_with_timeout(break_early, what="breaking out of iter_load") == ("item0", 0)
    assert_cleaned_up("after break")
    took = time.monotonic() - started
    assert took < SlowMetaGetBackend.SLOW * 0.75, f"break waited for the loads ({took:.2f}s)"

    backend.fast = {"item0", "item1"}

    def close_explicitly() -> list[tuple[str, Any]]:
        it = reg.iter_load(names, limit=8)
        first = [next(it), next(it)]
        it.close()
        return first

    first = call_with_timeout(close_explicitly, what="closing iter_load")
    assert sorted(first) == [("item0", 0), ("item1", 1)]
    assert_cleaned_up("after close()")

    backend.fast = {"item0"}

    def drop_unclosed() -> None:
        it = reg.iter_load(names, limit=8)
        assert next(it) == ("item0", 0)
        del it  # finalized here, by reference counting

    call_with_timeout(drop_unclosed, what="dropping a started iter_load")
    assert_cleaned_up("after dropping the iterator")

    backend.fast = {"item0", "missing"}

    def fail_midway() -> None:
        for _ in reg.iter_load(["item0", "missing", *names[1:]], limit=8):
            pass

    with pytest.raises(RegistryObjectNotFound):
        call_with_timeout(fail_midway, what="iter_load with a missing name")
    assert_cleaned_up("after a failed load")

    backend.fast = set(names)
    assert dict(reg.iter_load(names)) == {n: int(n[4:]) for n in names}
