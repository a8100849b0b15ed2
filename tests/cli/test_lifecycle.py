"""alias set|rm|ls and find as subprocesses on local disk, S3 (moto) and GCS
(fake-gcs): what they print, and the exit codes of a lost compare-and-swap
and a refused delete."""

from __future__ import annotations

from pathlib import Path

from tests.cli.runner import Place, one_error_line


def test_alias_and_find(place: Place, tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    for epoch in (1, 2, 3):
        put = place.run("put", "my:model", str(tmp_path / "w.bin"), "--meta", f"epoch={epoch}")
        assert put.code == 0, put
    assert place.run("put", "other", str(tmp_path / "w.bin"), "--meta", "epoch=2").code == 0

    moved = place.run("alias", "set", "my:model", "production", "2")
    assert (moved.code, moved.stdout) == (0, "2\n"), moved
    assert place.run("alias", "set", "my:model", "staging", "latest", "--json").json() == {
        "name": "my:model",
        "alias": "staging",
        "version": "3",
    }
    assert place.run("alias", "ls", "my:model", "--json").json() == {
        "production": "2",
        "staging": "3",
    }
    assert place.run("alias", "ls", "my:model").lines == ["production\t2", "staging\t3"]
    # loading commands take name@alias like name@version
    assert place.run("info", "my:model@production", "--json").json()["version"] == "2"

    lost = place.run("alias", "set", "my:model", "production", "3", "--expected", "1")
    assert lost.code == 4 and "points to version '2', not '1'" in one_error_line(lost)
    refused = place.run("rm", "my:model@3", "--yes")
    assert refused.code == 4 and "alias 'staging' points to it" in one_error_line(refused)
    assert place.run("alias", "rm", "my:model", "staging", "--expected", "3").code == 0
    missing = place.run("alias", "rm", "my:model", "staging")
    assert missing.code == 3 and "has no alias 'staging'" in one_error_line(missing)
    bad = place.run("alias", "set", "my:model", "2", "1")
    assert bad.code == 2 and "invalid alias" in one_error_line(bad)

    found = place.run("find", "--meta", "epoch=2", "--json").json()
    assert [(r["name"], r["version"]) for r in found] == [("my:model", "2"), ("other", "1")]
    assert place.run("find", "my:*", "--meta", "epoch=2").lines[0].split("\t")[:2] == [
        "my:model",
        "2",
    ]
    assert place.run("find", "--after", "2999-01-01", "--json").json() == []
    bad_time = place.run("find", "--before", "yesterday")
    assert bad_time.code == 2 and "ISO date" in one_error_line(bad_time)
