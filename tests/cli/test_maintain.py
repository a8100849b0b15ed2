"""verify, rm, gc and cache as subprocesses on local disk, S3 and GCS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.places import make_place
from tests.cli.runner import Place, one_error_line, overwrite

DATA = os.urandom(200 * 1024)


def test_verify_reports_damage_then_rm_and_gc_clean_up(place: Place, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(DATA)
    assert place.run("put", "data", str(src)).code == 0
    assert place.run("put", "data", str(src)).code == 0
    intact = place.run("verify", "--json")
    assert intact.code == 0
    assert intact.json() == {
        "ok": True,
        "versions": 2,
        "files": 2,
        "bytes": 2 * len(DATA),
        "damaged": [],
    }

    info = place.run("info", "data@1", "--json").json()
    overwrite(place, f"objects/data/{info['uuid']}/file/data.bin", DATA[:-1] + b"\0")
    damaged = place.run("verify")
    assert damaged.code == 1
    (line,) = damaged.lines
    assert line.split("\t")[:2] == ["data@1", "file/data.bin"]
    assert "sha256 differs" in line
    assert "1 damaged" in damaged.stderr
    refused = place.run("get", "data@1", str(tmp_path / "out.bin"))
    assert refused.code == 1 and "damaged" in one_error_line(refused)
    assert not (tmp_path / "out.bin").exists()

    if place.kind == "local":  # the same on every store once verify reads the files
        report = place.run("verify", "data", "--json").json()
        assert report["ok"] is False
        assert report["damaged"] == [
            {
                "name": "data",
                "version": "1",
                "file": "file/data.bin",
                "problem": report["damaged"][0]["problem"],
            }
        ]
        assert place.run("verify", "data@2").code == 0
        unasked = place.run("rm", "data@1")  # stdin is not a terminal: refuse without --yes
        assert unasked.code == 2 and "--yes" in one_error_line(unasked)
    removed = place.run("rm", "data@1", "--yes", "--json")
    assert removed.json() == {"deleted": [{"name": "data", "version": "1"}]}
    if place.kind == "local":
        assert place.run("rm", "data@1", "--yes").code == 3
        assert place.run("versions", "data", "--json").json()[0]["version"] == "2"

    dry = place.run("gc", "--grace", "0", "--dry-run")
    assert dry.lines == [f"objects/data/{info['uuid']}"]
    assert "would remove 1 orphaned folder (1 file" in dry.stderr
    (swept,) = place.run("gc", "--grace", "0", "--json").json()
    assert swept["removed"] == [f"objects/data/{info['uuid']}"] and swept["dry_run"] is False
    assert swept["bytes"] == len(DATA)
    assert place.run("verify").code == 0


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_cache_ls_prune_clear(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    remote = make_place(kind, request, tmp_path)
    cache = tmp_path / "cli-cache"
    src = tmp_path / "data.bin"
    src.write_bytes(DATA)
    for _ in range(2):  # a save writes through the cache
        assert remote.run("put", "data", str(src), "--cache-dir", str(cache)).code == 0
    (listed,) = remote.run("cache", "ls", "--json", "--cache-dir", str(cache)).json()
    assert listed["registry"] == remote.uri and listed["total_bytes"] == 2 * len(DATA)
    assert sorted(e["versions"][0] for e in listed["entries"]) == ["1", "2"]
    assert set(listed["entries"][0]) == {"name", "uuid", "versions", "size", "last_used"}
    pruned = remote.run("cache", "prune", "--max-size", "250K", "--cache-dir", str(cache))
    assert pruned.code == 0 and len(pruned.lines) == 1  # one entry dropped, listed
    assert "removed 1 cached version " in pruned.stderr
    cleared = remote.run("cache", "clear", "--json", "--cache-dir", str(cache)).json()
    assert cleared == [{"registry": remote.uri, "removed": 1, "bytes": len(DATA)}]
    empty = remote.run("cache", "ls", "--json", "--cache-dir", str(cache)).json()
    assert empty[0]["entries"] == []
    bad = remote.run("cache", "prune", "--max-size", "lots", "--cache-dir", str(cache))
    assert bad.code == 2 and "not a size" in one_error_line(bad)


def test_local_registry_has_no_cache(local_place: Place) -> None:
    result = local_place.run("cache", "ls")
    assert result.code == 0 and "keeps no local cache" in result.stderr
