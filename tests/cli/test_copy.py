"""cp between registries on different stores, and --store keys."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli.runner import Place, cli, one_error_line

DATA = os.urandom(150 * 1024)


def test_cp_local_to_s3_to_gcs_keeps_bytes_and_metadata(
    local_place: Place, s3_place: Place, gcs_place: Place, tmp_path: Path
) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(DATA)
    assert local_place.run("put", "data", str(src), "--meta", "run=7").code == 0
    env = {**s3_place.env, **gcs_place.env}
    to_s3 = cli("cp", local_place.uri, "data", s3_place.uri, env=env)
    assert (to_s3.code, to_s3.stdout) == (0, "data@1\n"), to_s3
    to_gcs = cli("cp", s3_place.uri, "data@1", gcs_place.uri, "copied@3", "--json", env=env)
    assert to_gcs.json() == {
        "source": {"registry": s3_place.uri, "name": "data", "version": "1"},
        "target": {"registry": gcs_place.uri, "name": "copied", "version": "3"},
        "files": 1,
        "bytes": len(DATA),
    }
    original = local_place.run("info", "data@1", "--json").json()
    copied = gcs_place.run("info", "copied@3", "--json").json()
    assert copied["files"] == original["files"] and copied["metadata"] == {"run": 7}
    assert gcs_place.run("get", "copied@3", str(tmp_path / "back.bin")).code == 0
    assert (tmp_path / "back.bin").read_bytes() == DATA

    again = cli("cp", s3_place.uri, "data@1", gcs_place.uri, "copied@3", env=env)
    assert again.code == 4 and "already exists" in one_error_line(again)
    missing = cli("cp", local_place.uri, "nope", gcs_place.uri, env=env)
    assert missing.code == 3 and "nope" in one_error_line(missing)


def test_store_keys_name_mounts(tmp_path: Path) -> None:
    config = tmp_path / "store.toml"
    config.write_text(
        'default = "models"\n'
        f'[mounts.models]\nbackend = "local"\npath = "{tmp_path / "models"}"\n'
        "version_objects = true\n"
        f'[mounts.data]\nbackend = "local"\npath = "{tmp_path / "data"}"\n'
        "version_objects = true\n"
    )
    src = tmp_path / "a.txt"
    src.write_text("a")
    store = ("--store", str(config))
    assert cli("put", "bert", str(src), *store).stdout == "1\n"
    assert cli("put", "data/table", str(src), *store).stdout == "1\n"
    listed = cli("ls", "--json", *store).json()
    assert [row["name"] for row in listed] == ["models/bert", "data/table"]  # mount order
    info = cli("info", "bert", *store, "--json").json()  # found in the one mount holding it
    assert info["mount"] == "models" and info["version"] == "1"
    assert cli("get", "data/table@1", str(tmp_path / "out.txt"), *store).code == 0
    assert (tmp_path / "out.txt").read_text() == "a"
    copied = cli("cp", "models", "bert", "data", *store)
    assert (copied.code, copied.stdout) == (0, "bert@1\n")
    ambiguous = cli("info", "bert", *store)
    assert ambiguous.code == 2 and "models/bert or data/bert" in one_error_line(ambiguous)
    unknown = cli("info", "nomount/bert", *store)
    assert unknown.code == 3 and "nomount" in one_error_line(unknown)
