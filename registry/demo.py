"""`make demo`: the quick start against the default local registry.

Run with ``python -m registry.demo``. It saves and loads a few objects in the
default registry (``$REGISTRY_HOME`` or ``~/.local/share/registry``), shows
versions in a throwaway versioned registry, and removes what it added.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from registry import Registry, RegistryVersionConflict
from registry.locations import default_root

DEMO_NAMES = ["demo:config", "demo:weights", "demo:notes", "demo:batch-0", "demo:batch-1"]


def main() -> None:
    reg = Registry()  # local disk at the default location
    print(f"registry at {reg.backend.uri}")
    for name in DEMO_NAMES:  # a previous run's leftovers
        if name in reg:
            del reg[name]

    reg["demo:config"] = {"lr": 0.1, "layers": [64, 64], "seed": 7}
    print(f"saved demo:config -> {reg['demo:config']}")

    try:
        import numpy as np

        weights = np.random.default_rng(0).random((256, 256))
        reg.save("demo:weights", weights, metadata={"team": "cv", "epoch": 3})
        assert (reg.load("demo:weights") == weights).all()
        print(
            f"saved demo:weights, a {weights.shape} array; metadata {reg.info('demo:weights', '1')['metadata']}"
        )
    except ImportError:
        print("numpy not installed: skipping the array example")

    notes = Path(tempfile.mkdtemp()) / "notes.txt"
    notes.write_text("files and folders are streamed in and copied out\n")
    reg.save("demo:notes", notes)
    print(f"saved a file; loading gives a private copy at {reg.load('demo:notes')}")

    batch = reg.save(["demo:batch-0", "demo:batch-1"], [b"first", b"second"])
    print(f"batch save: {batch}; batch load: {reg.load(['demo:batch-0', 'demo:batch-1']).results}")
    print(f"objects now: {[n for n in reg.list_objects() if n.startswith('demo:')]}")

    with tempfile.TemporaryDirectory() as folder:
        versioned = Registry(folder, version_objects=True)
        for step in range(3):
            versioned.save("demo:model", {"step": step})
        versioned.save("demo:model", {"step": "release"}, version="4.0.0")
        print(
            f"versions: {versioned.list_versions('demo:model')}; latest = {versioned['demo:model']}"
        )
        print(f"demo:model@2 = {versioned['demo:model@2']}")
        try:
            versioned.save("demo:model", {}, version="4")  # "4" == "4.0.0"
        except RegistryVersionConflict as exc:
            print(f"immutable versions: {exc}")

        start = time.perf_counter()
        n = 300
        versioned.save([f"demo:item-{i}" for i in range(n)], list(range(n)))
        saved = time.perf_counter() - start
        start = time.perf_counter()
        versioned.load([f"demo:item-{i}" for i in range(n)])
        loaded = time.perf_counter() - start
        print(f"batch of {n} small objects: save {n / saved:,.0f}/s, load {n / loaded:,.0f}/s")

    del reg[DEMO_NAMES]
    print(f"removed the demo objects from {default_root()}; done")


if __name__ == "__main__":
    main()
