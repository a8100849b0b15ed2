"""verify, gc and cache: keeping a registry and its local cache healthy."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from registry.cli.exits import FAILED, OK, USAGE, CLIError
from registry.cli.formats import (
    count,
    human_duration,
    human_size,
    iso_time,
    parse_duration,
    parse_size,
    short_time,
)
from registry.cli.locate import Target, scoped
from registry.cli.options import Settings, common
from registry.cli.run import execute
from registry.core.fanout import fanout
from registry.core.janitor import DEFAULT_GRACE
from registry.core.stored import Damage, check_files, stored_meta, stored_metas
from registry.core.types import ObjectMeta
from registry.exceptions import RegistryCorruptMetadata


async def _metas(
    target: Target, name: str | None, version: str | None
) -> tuple[list[ObjectMeta], list[Damage]]:
    """What to verify, and the metadata files that cannot even be read."""
    if version is not None and name is not None:
        return [await stored_meta(target.registry, name, version)], []
    if name is not None:
        found = await stored_metas(target.registry, name)
        if not found:
            await target.registry.info(name)  # raises: no such object
        return found, []
    names = await target.registry.list_objects()
    per_name = await fanout(
        lambda n: stored_metas(target.registry, n), names, limit=target.registry.backend.concurrency
    )
    metas: list[ObjectMeta] = []
    broken: list[Damage] = []
    for i, n in enumerate(names):
        error, some = per_name.errors.get(i), per_name.results[i]
        if isinstance(error, RegistryCorruptMetadata):
            broken.append(Damage(target.label + n, "?", "metadata", str(error)))
        elif error is not None:
            raise error
        elif some is not None:
            metas += some
    return metas, broken


@click.command("verify")
@click.argument("key", metavar="[NAME[@VERSION]]", required=False)
@common
def verify(settings: Settings, key: str | None) -> None:
    """Re-hash stored artifacts (all, one name's, or one version's) against the
    sha256 recorded at save time; exit 1 if any file is missing or damaged.

    Reads the store itself, never the local cache.
    """

    async def work() -> int:
        damaged: list[Damage] = []
        checked_versions = checked_files = checked_bytes = 0
        async with scoped(settings) as scope:
            targets: list[tuple[Target, str | None, str | None]]
            if key is None:
                targets = [(t, None, None) for t in scope.targets]
            else:
                targets = [await scope.resolve(key)]
            for target, name, version in targets:
                metas, broken = await _metas(target, name, version)
                damaged += broken
                total = sum(m.size for m in metas)
                with settings.out.progress(total, f"verifying {target.uri}") as advance:
                    found = await check_files(target.registry, metas, advance)
                damaged += [
                    Damage(target.label + d.name, d.version, d.file, d.problem) for d in found
                ]
                checked_versions += len(metas)
                checked_files += sum(len(m.files) for m in metas)
                checked_bytes += total
        out = settings.out
        rows = [
            {"name": d.name, "version": d.version, "file": d.file, "problem": d.problem}
            for d in damaged
        ]
        if out.json_mode:
            out.json(
                {
                    "ok": not damaged,
                    "versions": checked_versions,
                    "files": checked_files,
                    "bytes": checked_bytes,
                    "damaged": rows,
                }
            )
        else:
            out.table(
                ["OBJECT", "FILE", "PROBLEM"] if out.tty else [],
                [[f"{r['name']}@{r['version']}", r["file"], r["problem"]] for r in rows],
            )
            verdict = f"{len(damaged)} damaged" if damaged else "all intact"
            out.note(
                f"checked {count(checked_versions, 'version')} ({count(checked_files, 'file')}, "
                f"{human_size(checked_bytes)}): {verdict}"
            )
        return FAILED if damaged else OK

    execute(settings, work)


@click.command("gc")
@click.option(
    "--grace",
    default=human_duration(DEFAULT_GRACE),
    show_default=True,
    help="Keep unreferenced folders younger than this (a writer may still be uploading).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@common
def gc(settings: Settings, grace: str, dry_run: bool) -> None:
    """Remove artifact folders no version references (lost races, crashed saves,
    deleted and overwritten versions) once older than the grace period."""

    async def work() -> int:
        try:
            seconds = parse_duration(grace)
        except ValueError as exc:
            raise CLIError(f"--grace: {exc}", USAGE) from None
        reports: list[tuple[Target, Any]] = []
        async with scoped(settings) as scope:
            for target in scope.targets:
                reports.append((target, await target.registry.janitor(seconds, dry_run)))
        out = settings.out
        if out.json_mode:
            # one report per registry, like the cache commands (a --store has several)
            out.json(
                [
                    {"registry": t.uri, "grace_seconds": seconds, **msgspec.structs.asdict(r)}
                    for t, r in reports
                ]
            )
            return OK
        for target, report in reports:
            if dry_run:
                for folder in report.removed:
                    out.line(folder)
            verb = "would remove" if dry_run else "removed"
            out.note(
                f"{target.uri}: {verb} {count(len(report.removed), 'orphaned folder')} "
                f"({count(report.files, 'file')}, {human_size(report.bytes)}) and "
                f"{count(report.temp_files, 'temp file')}; kept "
                f"{report.kept_recent} younger than {human_duration(seconds)}"
            )
        return OK

    execute(settings, work)


@click.group("cache")
def cache() -> None:
    """Inspect and trim the local cache of a remote registry."""


def _entry(e: Any) -> dict[str, Any]:
    return {
        "name": e.name,
        "uuid": e.uuid,
        "versions": list(e.versions),
        "size": e.size,
        "last_used": e.last_used,
    }


def _no_cache(target: Target) -> str:
    return f"{target.uri} is read in place and keeps no local cache (only s3:// and gs:// do)"


@cache.command("ls")
@common
def cache_ls(settings: Settings) -> None:
    """List cached versions, least recently used first."""

    async def work() -> int:
        async with scoped(settings, check=False) as scope:
            infos = [(t, await t.registry.cache_info()) for t in scope.targets]
        out = settings.out
        if out.json_mode:
            out.json(
                [
                    {
                        "registry": t.uri,
                        "root": str(i.root) if i.root else None,
                        "max_bytes": i.max_bytes,
                        "max_entries": i.max_entries,
                        "total_bytes": i.total_bytes,
                        "entries": [_entry(e) for e in i.entries],
                    }
                    for t, i in infos
                ]
            )
            return OK
        for target, info in infos:
            if info.root is None:
                out.note(_no_cache(target))
                continue
            out.table(
                ["NAME", "VERSIONS", "UUID", "SIZE", "LAST USED"] if out.tty else [],
                [
                    [
                        target.label + e.name,
                        ",".join(e.versions) or "-",
                        e.uuid,
                        human_size(e.size) if out.tty else str(e.size),
                        short_time(e.last_used) if out.tty else iso_time(e.last_used),
                    ]
                    for e in info.entries
                ],
            )
            cap = f" of {human_size(info.max_bytes)}" if info.max_bytes is not None else ""
            out.note(
                f"{target.uri}: {count(len(info.entries), 'cached version')}, "
                f"{human_size(info.total_bytes)}{cap}, in {info.root}"
            )
        return OK

    execute(settings, work)


@cache.command("clear")
@common
def cache_clear(settings: Settings) -> None:
    """Empty the cache (the store is untouched; loads download again)."""

    async def work() -> int:
        async with scoped(settings, check=False) as scope:
            cleared = []
            for target in scope.targets:
                info = await target.registry.cache_info()
                await target.registry.clear_cache()
                cleared.append((target, info))
        out = settings.out
        if out.json_mode:
            out.json(
                [
                    {"registry": t.uri, "removed": len(i.entries), "bytes": i.total_bytes}
                    for t, i in cleared
                ]
            )
            return OK
        for target, info in cleared:
            if info.root is None:
                out.note(_no_cache(target))
            else:
                out.note(
                    f"{target.uri}: removed {count(len(info.entries), 'cached version')} "
                    f"({human_size(info.total_bytes)})"
                )
        return OK

    execute(settings, work)


@cache.command("prune")
@click.option("--max-size", metavar="SIZE", help="Keep at most this much (e.g. 10G), newest first.")
@click.option("--older-than", metavar="AGE", help="Drop entries unused for this long (e.g. 30d).")
@common
def cache_prune(settings: Settings, max_size: str | None, older_than: str | None) -> None:
    """Drop entries unused for --older-than, then the least recently used ones
    until at most --max-size remain."""

    async def work() -> int:
        if max_size is None and older_than is None:
            raise CLIError("cache prune needs --max-size and/or --older-than", USAGE)
        try:
            max_bytes = parse_size(max_size) if max_size is not None else None
            age = parse_duration(older_than) if older_than is not None else None
        except ValueError as exc:
            raise CLIError(str(exc), USAGE) from None
        async with scoped(settings, check=False) as scope:
            reports = [
                (t, await t.registry.prune_cache(max_bytes=max_bytes, older_than=age))
                for t in scope.targets
            ]
        out = settings.out
        if out.json_mode:
            out.json(
                [
                    {
                        "registry": t.uri,
                        "removed": [_entry(e) for e in r.removed],
                        "bytes": r.bytes,
                    }
                    for t, r in reports
                ]
            )
            return OK
        for target, report in reports:
            for e in report.removed:
                out.line(f"{target.label}{e.name}\t{','.join(e.versions) or '-'}\t{e.uuid}")
            out.note(
                f"{target.uri}: removed {count(len(report.removed), 'cached version')} "
                f"({human_size(report.bytes)})"
            )
        return OK

    execute(settings, work)
