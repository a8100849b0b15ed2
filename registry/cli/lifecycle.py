"""alias set|rm|ls and find: the model-lifecycle commands.

Loading by alias needs no command of its own: ``get``, ``info`` and ``cp``
take ``name@production`` like any ``name@version``.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import click

from registry.cli.exits import OK, USAGE, CLIError
from registry.cli.formats import compact, human_size, iso_time, short_time
from registry.cli.locate import scoped
from registry.cli.options import Settings, common
from registry.cli.run import execute
from registry.cli.transfer import _parse_meta


@click.group("alias")
def alias() -> None:
    """Move, remove and list aliases (names such as 'production' that point to a version)."""


def _plain_name(key: str, version: str | None) -> None:
    if version is not None:
        raise CLIError(f"give the name without '@version', got {key!r}", USAGE)


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@click.option(
    "--expected",
    metavar="VERSION",
    help="Move only if the alias points to this version now (compare-and-swap); "
    "else exit 4 naming where it points.",
)
@common
def alias_set(
    settings: Settings, name: str, alias_name: str, version: str, expected: str | None
) -> None:
    """Point ALIAS of NAME at VERSION (a version, 'latest' or another alias)."""

    async def work() -> int:
        async with scoped(settings) as scope:
            target, plain, in_key = await scope.resolve(name)
            _plain_name(name, in_key)
            moved = await target.registry.set_alias(plain, alias_name, version, expected=expected)
        if settings.out.json_mode:
            settings.out.json({"name": target.label + plain, "alias": alias_name, "version": moved})
        else:
            settings.out.line(moved)
        return OK

    execute(settings, work)


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--expected", metavar="VERSION", help="Remove only if it points to this version.")
@common
def alias_rm(settings: Settings, name: str, alias_name: str, expected: str | None) -> None:
    """Remove ALIAS of NAME (the version stays)."""

    async def work() -> int:
        async with scoped(settings) as scope:
            target, plain, in_key = await scope.resolve(name)
            _plain_name(name, in_key)
            await target.registry.delete_alias(plain, alias_name, expected=expected)
        settings.out.note(f"removed alias {alias_name!r} of {target.label + plain}")
        return OK

    execute(settings, work)


@alias.command("ls")
@click.argument("name")
@common
def alias_ls(settings: Settings, name: str) -> None:
    """List the aliases of NAME and the versions they point to."""

    async def work() -> int:
        async with scoped(settings) as scope:
            target, plain, in_key = await scope.resolve(name)
            _plain_name(name, in_key)
            found = await target.registry.aliases(plain)
        out = settings.out
        if out.json_mode:
            out.json(found)
        else:
            out.table(["ALIAS", "VERSION"], [[a, v] for a, v in found.items()])
            if not found:
                out.note(f"{target.label + plain} has no aliases")
        return OK

    execute(settings, work)


def _when(text: str | None, option: str) -> float | None:
    """Seconds since the epoch, or an ISO date/time (local time unless it says)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise CLIError(
            f"{option} takes an ISO date or time (2026-01-31, 2026-01-31T12:00) or "
            f"seconds since the epoch, got {text!r}",
            USAGE,
        ) from None


@click.command("find")
@click.argument("pattern", required=False)
@click.option(
    "--meta",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only versions whose metadata has KEY equal to VALUE (JSON or text); repeatable.",
)
@click.option("--after", metavar="WHEN", help="Created after (ISO date/time or epoch seconds).")
@click.option("--before", metavar="WHEN", help="Created before (ISO date/time or epoch seconds).")
@common
def find(
    settings: Settings,
    pattern: str | None,
    meta: tuple[str, ...],
    after: str | None,
    before: str | None,
) -> None:
    """Find versions by name glob PATTERN (e.g. 'my:*') and metadata.

    Reads the metadata of every version of the matching names: narrow PATTERN
    on large registries.
    """

    async def work() -> int:
        metadata = _parse_meta(meta)
        after_s, before_s = _when(after, "--after"), _when(before, "--before")
        rows: list[dict[str, Any]] = []
        async with scoped(settings) as scope:
            for target in scope.targets:
                local = pattern
                if pattern is not None and target.label and pattern.startswith(target.label):
                    local = pattern[len(target.label) :]
                hits = await target.registry.find(
                    local, metadata=metadata, created_after=after_s, created_before=before_s
                )
                rows += [{**hit.info, "name": target.label + hit.name} for hit in hits]
        out = settings.out
        if out.json_mode:
            out.json(rows)
        elif out.tty:
            out.table(
                ["NAME", "VERSION", "SIZE", "CREATED", "METADATA"],
                [
                    [
                        r["name"],
                        r["version"],
                        human_size(r["size"]),
                        short_time(r["created_at"]),
                        compact(r["metadata"]),
                    ]
                    for r in rows
                ],
            )
            if not rows:
                out.note("no versions match")
        else:
            out.table(
                [],
                [
                    [
                        r["name"],
                        r["version"],
                        str(r["size"]),
                        iso_time(r["created_at"]),
                        json.dumps(r["metadata"], separators=(",", ":"), default=str),
                    ]
                    for r in rows
                ],
            )
        return OK

    execute(settings, work)
