"""put, ls, versions, info and get on local disk, S3 (moto) and GCS (fake-gcs),
each run as a subprocess: output in a pipe, JSON shape, exit codes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.cli.runner import Place, one_error_line

WEIGHTS = os.urandom(300 * 1024)  # well above the inline limit


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(WEIGHTS)
    folder = tmp_path / "checkpoint"
    (folder / "shards").mkdir(parents=True)
    (folder / "shards" / "0.bin").write_bytes(WEIGHTS[:1000])
    (folder / "config.json").write_text('{"layers": 2}')
    return weights, folder


def test_put_then_browse_then_get(place: Place, tmp_path: Path) -> None:
    weights, folder = _tree(tmp_path)
    first = place.run("put", "model", str(weights), "--meta", "epochs=3", "--meta", "tag=best")
    assert (first.code, first.stdout) == (0, "1\n"), first
    assert place.run("put", "model", str(folder)).stdout == "2\n"
    saved = place.run("put", "cfg", str(folder / "config.json"), "--version", "1.0", "--json")
    assert saved.json() == {"name": "cfg", "version": "1.0", "files": 1, "bytes": 13}

    listing = place.run("ls", "--json")
    assert listing.code == 0
    by_name = {row["name"]: row for row in listing.json()}
    assert sorted(by_name) == ["cfg", "model"]
    model = by_name["model"]
    assert model["versions"] == ["1", "2"] and model["latest"] == "2"
    assert model["materializer"].endswith("PathMaterializer")
    assert set(model) == {
        "name", "versions", "latest", "size", "materializer", "class", "created_at", "metadata",
    }  # fmt: skip

    if place.kind == "local":  # formats and patterns are the same on every store
        plain = place.run("ls", "mod*")  # a pipe: tab-separated lines, no header
        (line,) = plain.lines
        assert line.split("\t")[:4] == ["model", "2", "2", str(len(WEIGHTS[:1000]) + 13)]
        fields = dict(line.split("\t", 1) for line in place.run("info", "model@1").lines if line)
        assert fields["version"] == "1" and fields["size"] == str(len(WEIGHTS))

    versions = place.run("versions", "model", "--json").json()
    assert [v["version"] for v in versions] == ["1", "2"]
    assert versions[0]["metadata"] == {"epochs": 3, "tag": "best"}

    info = place.run("info", "model@1", "--json").json()
    assert info["files"] == {
        "file/weights.bin": {"size": len(WEIGHTS), "sha256": hashlib.sha256(WEIGHTS).hexdigest()}
    }

    got = place.run("get", "model@1", str(tmp_path / "fetched.bin"))
    assert (got.code, got.stdout.strip()) == (0, str(tmp_path / "fetched.bin"))
    assert (tmp_path / "fetched.bin").read_bytes() == WEIGHTS
    (tmp_path / "into").mkdir()
    latest = place.run("get", "model", str(tmp_path / "into"), "--json").json()
    assert latest["version"] == "2" and latest["path"] == str(tmp_path / "into" / "checkpoint")
    assert (tmp_path / "into" / "checkpoint" / "shards" / "0.bin").read_bytes() == WEIGHTS[:1000]
    if place.kind == "local":
        again = place.run("get", "model", str(tmp_path / "into"))
        assert again.code == 2 and "--force" in one_error_line(again)
        assert place.run("get", "model", str(tmp_path / "into"), "--force").code == 0


def test_missing_object_and_version(place: Place, tmp_path: Path) -> None:
    weights, _ = _tree(tmp_path)
    assert place.run("put", "model", str(weights)).code == 0
    missing = [["info", "nope"], ["info", "model@9"]]
    if place.kind == "local":
        missing += [["get", "nope", str(tmp_path / "x")], ["versions", "nope"]]
    for args in missing:
        result = place.run(*args)
        assert result.code == 3, (args, result)
        assert "nope" in one_error_line(result) or "model@9" in result.stderr
    conflict = place.run("put", "model", str(weights), "--version", "1")
    assert conflict.code == 4 and "already exists" in one_error_line(conflict)
