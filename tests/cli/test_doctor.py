"""doctor against real stores, a store that ignores If-None-Match (a proxy
that drops the header on the way to moto), and an endpoint nobody listens on."""

from __future__ import annotations

from pathlib import Path

from tests.cli.header_proxy import header_dropping_proxy
from tests.cli.runner import Place, cli
from tests.servers import free_port

CHECKS = [
    "reachable",
    "credentials",
    "bucket",
    "write and read back",
    "listing",
    "conditional create",
    "compare-and-swap",
    "multipart upload",
    "ranged reads",
    "cleanup",
]


def _statuses(report: dict[str, object]) -> dict[str, str]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["check"].split(" (")[0]: c["status"] for c in checks}


def test_doctor_passes_on_real_stores(place: Place) -> None:
    result = cli("doctor", place.uri, "--json", env=place.env)
    assert result.code == 0, result
    report = result.json()
    assert report["ok"] is True
    statuses = _statuses(report)
    assert list(statuses) == CHECKS
    assert "fail" not in statuses.values()
    if place.kind != "local":  # every check applies to a bucket store
        assert set(statuses.values()) == {"ok"}
    leftovers = cli("ls", "-r", place.uri, "--json", env=place.env)
    # doctor creates no registry: its probes lived under _doctor/ and are gone
    assert leftovers.code == 3


def test_doctor_finds_a_store_that_ignores_if_none_match(s3_place: Place) -> None:
    with header_dropping_proxy(s3_place.env["AWS_ENDPOINT_URL"], "If-None-Match") as proxy:
        result = cli("doctor", s3_place.uri, "--endpoint", proxy, env=s3_place.env)
    assert result.code == 1, result
    rows = {line.split("\t")[1]: line.split("\t") for line in result.lines}
    status, _, detail, fix = rows["conditional create (If-None-Match)"]
    assert status == "fail"
    assert "second create of the same key succeeded" in detail and "MVCC is unsafe" in detail
    assert fix
    # everything else works through the proxy: the one failure is pinned down
    assert [r[1] for r in rows.values() if r[0] == "fail"] == ["conditional create (If-None-Match)"]
    assert "1 check(s) failed" in result.stderr


def test_doctor_on_an_unreachable_endpoint(s3_place: Place) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli("doctor", s3_place.uri, "--endpoint", dead, "--json", env=s3_place.env)
    assert result.code == 1
    statuses = _statuses(result.json())
    assert statuses["reachable"] == "fail"
    assert set(list(statuses.values())[1:]) == {"skip"}
    first = result.json()["checks"][0]
    assert "cannot connect" in first["detail"] and "endpoint" in first["fix"]


def test_doctor_on_a_missing_bucket(s3_place: Place, tmp_path: Path) -> None:
    result = cli("doctor", "s3://no-such-bucket-here/x", "--json", env=s3_place.env)
    assert result.code == 1
    statuses = _statuses(result.json())
    assert statuses["credentials"] == "ok" and statuses["bucket"] == "fail"
