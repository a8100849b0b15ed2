"""With allow_pickle=False, loading never imports a module the metadata names
(its top level would run); with pickle allowed it still does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLANTED = """
import pathlib, os
pathlib.Path(os.environ["MARKER"]).write_text("imported")

import torch

class Net(torch.nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.width = width
        self.lin = torch.nn.Linear(width, width)

    def get_config(self) -> dict:
        return {"width": self.width}
"""


def _run(code: str, tmp_path: Path, marker: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{tmp_path / 'mods'}:{Path.cwd()}", "MARKER": str(marker)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


def test_pickle_refused_load_imports_no_module_named_by_metadata(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "planted.py").write_text(PLANTED)
    store = tmp_path / "store"
    marker = tmp_path / "marker"
    saved = _run(
        f"""
        from registry import Registry
        import planted
        Registry({str(store)!r}).save("net", planted.Net())
        """,
        tmp_path,
        marker,
    )
    assert saved.returncode == 0, saved.stderr
    marker.unlink()

    refused = _run(
        f"""
        import sys
        from registry import Registry
        from registry.exceptions import MaterializerError
        reg = Registry({str(store)!r}, allow_pickle=False)
        try:
            reg.load("net")
        except MaterializerError as exc:
            print("refused:", exc)
        weights = reg.load("net", options={{"weights_only": True}})
        print(sorted(weights), "planted" in sys.modules)
        """,
        tmp_path,
        marker,
    )
    assert refused.returncode == 0, refused.stderr
    assert not marker.exists()
    assert "Import the module that defines it" in refused.stdout
    assert "['lin.bias', 'lin.weight'] False" in refused.stdout

    # The caller imports the module itself: the class is then used as is.
    imported = _run(
        f"""
        import planted
        from registry import Registry
        print(type(Registry({str(store)!r}, allow_pickle=False).load("net")).__name__)
        """,
        tmp_path,
        marker,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "Net"

    trusting = _run(
        f"""
        from registry import Registry
        print(type(Registry({str(store)!r}).load("net")).__name__)
        """,
        tmp_path,
        marker,
    )
    assert trusting.returncode == 0, trusting.stderr
    assert trusting.stdout.strip() == "Net" and marker.exists()
