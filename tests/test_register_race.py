"""Materializer registrations from several processes at once all survive
(compare-and-swap on the registry's settings file, no lock)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from registry import Registry

N_PROCESSES = 6
PER_PROCESS = 5


def register_many(root: str, proc: int, start: float) -> None:
    import time

    while time.time() < start:  # line up the racers
        time.sleep(0.001)
    reg = Registry(root)
    for i in range(PER_PROCESS):
        reg.register_materializer(
            f"racers.p{proc}.Class{i}", "registry.materializers.builtin.PickleMaterializer"
        )


@pytest.mark.slow
def test_concurrent_registrations_are_all_kept(tmp_path: Path) -> None:
    import time

    root = str(tmp_path / "reg")
    Registry(root).list_objects()  # create the registry first
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 2.0
    procs = [ctx.Process(target=register_many, args=(root, p, start)) for p in range(N_PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    table = Registry(root).registered_materializers()
    expected = {f"racers.p{p}.Class{i}" for p in range(N_PROCESSES) for i in range(PER_PROCESS)}
    assert set(table) == expected
