"""ls, versions, info: what a registry holds."""

from __future__ import annotations

import fnmatch
from typing import Any

import click

from registry.cli.exits import OK
from registry.cli.formats import (
    compact,
    human_size,
    iso_time,
    short_class,
    short_time,
    version_span,
)
from registry.cli.locate import Target, scoped
from registry.cli.options import Settings, common
from registry.cli.run import execute
from registry.core.fanout import fanout
from registry.core.versions import LATEST


def _summary(name: str, versions: dict[str, Any]) -> dict[str, Any]:
    latest = list(versions.values())[-1]  # info() lists versions ascending
    return {
        "name": name,
        "versions": list(versions),
        "latest": latest["version"],
        "size": latest["size"],
        "materializer": latest["materializer"],
        "class": latest["class"],
        "created_at": latest["created_at"],
        "metadata": latest["metadata"],
    }


async def _list(target: Target, pattern: str | None) -> list[dict[str, Any]]:
    names = [
        n
        for n in await target.registry.list_objects()
        if pattern is None
        or fnmatch.fnmatchcase(target.label + n, pattern)
        or fnmatch.fnmatchcase(n, pattern)
    ]
    found = await fanout(target.registry.info, names, limit=16)
    found.raise_first()
    return [
        _summary(target.label + n, versions)
        for n, versions in zip(names, found.results, strict=True)
        if versions  # deleted between the listing and the read
    ]


@click.command("ls")
@click.argument("pattern", required=False)
@common
def ls(settings: Settings, pattern: str | None) -> None:
    """List objects (optionally those matching a glob PATTERN, e.g. 'bert-*').

    Shows each object's versions and its latest version's size, materializer,
    creation time and metadata.
    """

    async def work() -> int:
        async with scoped(settings) as scope:
            rows: list[dict[str, Any]] = []
            for target in scope.targets:
                rows += await _list(target, pattern)
        out = settings.out
        if out.json_mode:
            out.json(rows)
        elif out.tty:
            out.table(
                ["NAME", "VERSIONS", "SIZE", "MATERIALIZER", "CREATED", "METADATA"],
                [
                    [
                        r["name"],
                        version_span(r["versions"]),
                        human_size(r["size"]),
                        short_class(r["materializer"]),
                        short_time(r["created_at"]),
                        compact(r["metadata"]),
                    ]
                    for r in rows
                ],
            )
            if not rows:
                out.note("no objects" + (f" matching {pattern!r}" if pattern else ""))
        else:
            out.table(
                [],
                [
                    [
                        r["name"],
                        r["latest"],
                        str(len(r["versions"])),
                        str(r["size"]),
                        r["materializer"],
                        iso_time(r["created_at"]),
                    ]
                    for r in rows
                ],
            )
        return OK

    execute(settings, work)


@click.command("versions")
@click.argument("name")
@common
def versions(settings: Settings, name: str) -> None:
    """List the versions of NAME, oldest first."""

    async def work() -> int:
        async with scoped(settings) as scope:
            target, plain_name, version = await scope.resolve(name)
            if version is not None:
                raise ValueError(f"versions takes a name without '@version', got {name!r}")
            found: dict[str, Any] = await target.registry.info(plain_name)
        rows = list(found.values())
        out = settings.out
        if out.json_mode:
            out.json(rows)
        else:
            out.table(
                ["VERSION", "SIZE", "CREATED", "METADATA"],
                [
                    [
                        r["version"],
                        human_size(r["size"]) if out.tty else str(r["size"]),
                        short_time(r["created_at"]) if out.tty else iso_time(r["created_at"]),
                        compact(r["metadata"]) if out.tty else _json(r["metadata"]),
                    ]
                    for r in rows
                ],
            )
        return OK

    execute(settings, work)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), default=str)


@click.command("info")
@click.argument("key", metavar="NAME[@VERSION]")
@common
def info(settings: Settings, key: str) -> None:
    """Show one version's metadata and files (default: the latest version)."""

    async def work() -> int:
        async with scoped(settings) as scope:
            target, name, version = await scope.resolve(key)
            found: dict[str, Any] = await target.registry.info(name, version or LATEST)
            if target.label:
                found = {"mount": target.label.rstrip("/"), **found}
        out = settings.out
        if out.json_mode:
            out.json(found)
            return OK
        fields = [
            ("name", target.label + found["name"]),
            ("version", found["version"]),
            ("size", human_size(found["size"]) if out.tty else str(found["size"])),
            ("created", iso_time(found["created_at"])),
            ("class", found["class"]),
            ("materializer", found["materializer"]),
            ("uuid", found["uuid"]),
            ("inline", "yes" if found["inline"] else "no"),
            ("metadata", _json(found["metadata"])),
        ]
        out.table(["FIELD", "VALUE"], [list(f) for f in fields], plain=not out.tty)
        files = [
            [path, human_size(f["size"]) if out.tty else str(f["size"]), f["sha256"]]
            for path, f in found["files"].items()
        ]
        if out.tty:
            out.line("")
            out.table(["FILE", "SIZE", "SHA256"], files)
        else:
            out.table([], [["file", *row] for row in files])
        return OK

    execute(settings, work)
