"""What every command shares: help, exit codes, one-line errors (tracebacks
only with -v), the console script, and tables only on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.runner import Place, cli, one_error_line
from tests.servers import free_port

COMMANDS = [
    ["ls"], ["versions"], ["info"], ["get"], ["put"], ["rm"], ["cp"], ["verify"], ["gc"],
    ["cache"], ["cache", "ls"], ["cache", "clear"], ["cache", "prune"], ["doctor"],
    ["alias"], ["alias", "set"], ["alias", "rm"], ["alias", "ls"], ["find"],
]  # fmt: skip


def test_help_for_every_command() -> None:
    top = cli("--help")
    assert top.code == 0 and "Exit codes" in top.stdout
    for command in COMMANDS:
        result = cli(*command, "--help")
        assert result.code == 0, (command, result)
        assert result.stdout.startswith("Usage: registry " + " ".join(command)), command
        if command not in (["cache"], ["alias"]):
            assert "--json" in result.stdout and "--registry" in result.stdout, command


def test_console_script_is_installed(local_place: Place, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("registry")
    src = tmp_path / "a.txt"
    src.write_text("a")
    done = subprocess.run(
        [str(script), "put", "a", str(src), "-r", local_place.uri],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr


@pytest.mark.parametrize(
    ("uri", "code", "words"),
    [
        ("memory://", 2, "memory:// registries live inside one Python process"),
        ("ftp://host/x", 2, "unsupported location 'ftp://host/x'"),
        ("{tmp}/nothing-here", 3, "no registry at file://"),
    ],
)
def test_bad_locations(tmp_path: Path, uri: str, code: int, words: str) -> None:
    result = cli("ls", "-r", uri.format(tmp=tmp_path))
    assert result.code == code
    assert words in one_error_line(result)


def test_registry_uri_from_the_environment(local_place: Place, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a")
    assert local_place.run("put", "a", str(src)).code == 0
    listed = cli("ls", env={"REGISTRY_URI": local_place.uri})
    assert listed.lines[0].split("\t")[0] == "a"


def test_unreachable_endpoints_fail_in_one_line(s3_place: Place, gcs_place: Place) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    s3 = cli("ls", "-r", s3_place.uri, "--endpoint", dead, env=s3_place.env)
    assert s3.code == 5 and "cannot reach the S3 endpoint" in one_error_line(s3)
    gcs = cli("ls", "-r", gcs_place.uri, env={"STORAGE_EMULATOR_HOST": dead})
    assert gcs.code == 5 and "cannot reach the GCS endpoint" in one_error_line(gcs)
    verbose = cli("ls", "-r", s3_place.uri, "--endpoint", dead, "-v", env=s3_place.env)
    assert verbose.code == 5 and "Traceback" in verbose.stderr


def test_missing_bucket(s3_place: Place) -> None:
    result = cli("ls", "-r", "s3://no-such-bucket-here", env=s3_place.env)
    assert result.code == 5 and "does not exist" in one_error_line(result)


def _on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """Output of ``registry ARGS`` with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    env = {**{k: v for k, v in os.environ.items() if k != "REGISTRY_URI"}, **(env or {})}
    env.update({"COLUMNS": "120", "TERM": "xterm"})
    process = subprocess.Popen(
        [sys.executable, "-m", "registry", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=30) == 0
    os.close(leader)
    return b"".join(chunks).decode()


def test_tables_on_a_terminal_plain_lines_in_a_pipe(local_place: Place, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a")
    assert local_place.run("put", "a", str(src), "--meta", "epochs=3").code == 0
    table = _on_a_terminal("ls", "-r", local_place.uri)
    assert "NAME" in table and "MATERIALIZER" in table and "epochs=3" in table
    assert "\t" not in table
    piped = local_place.run("ls")
    assert "NAME" not in piped.stdout and piped.stdout.count("\t") == 5


def test_progress_bars_on_a_terminal(s3_place: Place, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    env = dict(s3_place.env)
    put = _on_a_terminal("put", "big", str(src), "-r", s3_place.uri, env=env)
    assert "━" in put and "saved big@1 (1 file, 3.0 MiB)" in put
    dest = tmp_path / "back.bin"
    got = _on_a_terminal("get", "big", str(dest), "-r", s3_place.uri, env=env)
    assert "━" in got and f"wrote big@1 to {dest}" in got
    assert dest.read_bytes() == src.read_bytes()
