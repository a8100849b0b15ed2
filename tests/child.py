"""Running a registry call in a fresh interpreter: what another process sees."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load_in_child(reg: Any, name: str) -> str:
    """Load ``name`` in a new Python process, with ``allow_pickle=False``, from
    a registry that travels pickled (as its configuration), and return
    ``"<module> <class> <payload>"`` of what it got."""
    code = (
        "import pickle, sys\n"
        "reg = pickle.loads(sys.stdin.buffer.read())\n"
        "reg.async_registry.allow_pickle = False\n"
        f"obj = reg.load({name!r})\n"
        "print(type(obj).__module__, type(obj).__name__, obj.payload)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(reg),
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()
