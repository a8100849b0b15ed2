"""``registry doctor``: can this store be trusted with a registry?"""

from __future__ import annotations

import click

from registry.cli.exits import FAILED, OK
from registry.cli.locate import location_of
from registry.cli.options import Settings, common
from registry.cli.probes import Doctor, probe_backend
from registry.cli.run import execute

_MARKS = {"ok": ("ok", "green"), "fail": ("FAIL", "bold red"), "skip": ("skip", "dim")}


@click.command("doctor")
@click.argument("uri", required=False)
@common
def doctor(settings: Settings, uri: str | None) -> None:
    """Check that the store at URI (default: -r / REGISTRY_URI) works for a
    registry: reachable, credentials, bucket, listing, conditional writes
    (a second create must fail), multipart uploads and ranged reads.

    Writes a few probe objects under _doctor/ and removes them. Exit 1 if any
    check fails.
    """

    async def work() -> int:
        where = uri or location_of(settings)
        backend = probe_backend(where, settings)
        checks = await Doctor(backend).run()
        failed = [c for c in checks if c.status == "fail"]
        out = settings.out
        if out.json_mode:
            out.json(
                {
                    "uri": backend.uri,
                    "ok": not failed,
                    "checks": [
                        {"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix}
                        for c in checks
                    ],
                }
            )
        elif out.tty:
            for c in checks:
                mark, style = _MARKS[c.status]
                out.line(
                    f"{mark:<5} {c.name}: {c.detail}", style=style if c.status != "ok" else None
                )
                if c.fix:
                    out.line(f"      fix: {c.fix}")
        else:
            out.table([], [[c.status, c.name, c.detail, c.fix] for c in checks])
        if failed:
            out.note(f"{backend.uri}: {len(failed)} check(s) failed; see the fixes above")
        else:
            out.note(f"{backend.uri}: every check passed")
        return FAILED if failed else OK

    execute(settings, work)
