"""Importing the package stays cheap: no cloud SDK, numpy or pydantic."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, registry\n"
        "from registry import Registry, AsyncRegistry, LocalRegistryBackend\n"
        "Registry\n"
        "heavy = {'numpy', 'pydantic', 'boto3', 'aioboto3', 'botocore', 'google', 'torch',"
        " 'click', 'rich'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_bare_import_does_not_start_asyncio() -> None:
    code = "import sys, registry\nprint('asyncio' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
