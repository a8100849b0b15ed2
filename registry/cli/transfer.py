"""get, put, rm, cp: moving versions between registries and the file system."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread
import click

from registry.cli.counting import UploadCounter
from registry.cli.exits import OK, USAGE, CLIError
from registry.cli.formats import count, human_size
from registry.cli.locate import (
    Scope,
    Target,
    location_of,
    open_registry,
    open_scope,
    scheme_of,
    scoped,
    split_key,
)
from registry.cli.options import Settings, common
from registry.cli.run import execute
from registry.core.stored import copy_version, export_files, stored_meta
from registry.core.versions import LATEST
from registry.materializers.path import PathMaterializer

PATH_MATERIALIZER = f"{PathMaterializer.__module__}.{PathMaterializer.__qualname__}"


def _size_of(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    if path.is_file():
        return 1, path.stat().st_size
    count = total = 0
    for dirpath, _dirs, files in os.walk(path):
        for filename in files:
            count += 1
            total += os.stat(os.path.join(dirpath, filename)).st_size
    return count, total


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _place(staging: Path, materializer: str, name: str, dest: Path, force: bool) -> Path:
    """Move what was exported into ``staging`` to ``dest`` (inside it when
    ``dest`` is a folder, like cp): the saved file or folder for path
    objects, the artifact folder for anything else."""
    source = staging
    basename = name
    if materializer == PATH_MATERIALIZER:
        kind = "file" if (staging / "file").is_dir() else "dir"
        (source,) = list((staging / kind).iterdir())
        basename = source.name
    target = dest / basename if dest.is_dir() else dest
    if target.exists() or target.is_symlink():
        if not force:
            raise CLIError(f"{target} exists; pass --force to replace it", USAGE)
        _remove(target)
    os.rename(source, target)
    return target


@click.command("get")
@click.argument("key", metavar="NAME[@VERSION]")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST (or what it would hold) if it exists.")
@common
def get(settings: Settings, key: str, dest: Path, force: bool) -> None:
    """Write a version's files to DEST, streamed and checked against their sha256.

    A saved file or folder comes back as that file or folder; any other
    object as its artifact files in a folder named after it. When DEST is an
    existing folder, the result goes inside it.
    """

    parent = dest if dest.is_dir() else dest.absolute().parent

    async def work() -> int:
        if not await anyio.to_thread.run_sync(parent.is_dir):
            raise CLIError(f"{parent} is not a folder; create it first", USAGE)
        async with scoped(settings) as scope:
            target, name, version = await scope.resolve(key)
            meta = await stored_meta(target.registry, name, version or LATEST)
            staging = Path(tempfile.mkdtemp(prefix=".registry-get-", dir=parent))
            try:
                with settings.out.progress(meta.size, f"{name}@{meta.version}") as advance:
                    await export_files(target.registry, meta, staging, advance)
                placed = await anyio.to_thread.run_sync(
                    _place, staging, meta.materializer, name, dest, force
                )
            finally:
                await anyio.to_thread.run_sync(shutil.rmtree, staging, True)
        out = settings.out
        result = {
            "name": target.label + name,
            "version": meta.version,
            "path": str(placed),
            "files": len(meta.files),
            "bytes": meta.size,
        }
        out.result(
            result,
            note=f"wrote {result['name']}@{meta.version} to {placed} "
            f"({count(len(meta.files), 'file')}, {human_size(meta.size)})",
            line=str(placed),
        )
        return OK

    execute(settings, work)


def _parse_meta(pairs: tuple[str, ...]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key:
            raise CLIError(f"--meta takes key=value, got {pair!r}", USAGE)
        try:  # numbers, true/false, null, lists and objects keep their type
            metadata[key] = json.loads(text)
        except ValueError:
            metadata[key] = text
    return metadata


@click.command("put")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--version", "version", help="Save as this version (default: the next number).")
@click.option(
    "--meta",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metadata to store (repeatable). Values that parse as JSON keep their type "
    "(10, 0.93, true); others are strings.",
)
@click.option(
    "--unversioned",
    is_flag=True,
    help="When this creates the registry: keep one version per name (the library's "
    "default) instead of numbered versions.",
)
@common
def put(
    settings: Settings,
    name: str,
    path: Path,
    version: str | None,
    meta: tuple[str, ...],
    unversioned: bool,
) -> None:
    """Save the file or folder PATH as NAME; prints the version saved.

    Files are streamed, never read whole. A registry that does not exist yet
    is created (with numbered versions unless --unversioned).
    """

    source = path.absolute()

    async def work() -> int:
        metadata = _parse_meta(meta)
        files, size = await anyio.to_thread.run_sync(_size_of, path)
        if settings.store is None and scheme_of(location_of(settings)) in ("s3", "gs"):
            # Uploads are what takes time: a byte bar, moving as each file is read.
            with settings.out.progress(size, name) as advance:
                registry = await open_registry(
                    location_of(settings),
                    settings,
                    create=True,
                    versioned=not unversioned,
                    wrap=lambda backend: UploadCounter(backend, advance),
                )
                scope = Scope([Target(registry, "")], opened=[registry])
                target, plain_name, saved = await _save(scope, name, source, version, metadata)
        else:  # local disk: one fast copy, no bytes to report
            scope = await open_scope(settings, create=True, versioned=not unversioned)
            with settings.out.spinner(f"saving {path} ({human_size(size)})"):
                target, plain_name, saved = await _save(scope, name, source, version, metadata)
        out = settings.out
        shown = target.label + plain_name
        out.result(
            {"name": shown, "version": saved, "files": files, "bytes": size},
            note=f"saved {shown}@{saved} ({count(files, 'file')}, {human_size(size)})",
            line=saved,
        )
        return OK

    execute(settings, work)


async def _save(
    scope: Scope, key: str, source: Path, version: str | None, metadata: dict[str, Any]
) -> tuple[Target, str, str]:
    """Save ``source`` under ``key``; (target, name, version saved). Closes the scope."""
    try:
        target, name, key_version = await scope.resolve(key, write=True)
        if key_version is not None and version is not None and key_version != version:
            raise CLIError(f"{key!r} names a version and --version {version} another", USAGE)
        saved = await target.registry.save(
            name, source, version=key_version or version, metadata=metadata
        )
    finally:
        await scope.aclose()
    return target, name, saved


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise CLIError(
            "not deleting without confirmation: stdin is not a terminal; pass --yes", USAGE
        )
    click.confirm(question, abort=True, err=True)


@click.command("rm")
@click.argument("key", metavar="NAME[@VERSION]")
@click.option("-y", "--yes", is_flag=True, help="Do not ask (needed when not on a terminal).")
@common
def rm(settings: Settings, key: str, yes: bool) -> None:
    """Delete one version, or every version of NAME.

    The version's number is never handed out again; its files stay until
    `registry gc` removes them after the grace period, so readers already
    loading it finish.
    """

    async def work() -> int:
        async with scoped(settings) as scope:
            target, name, version = await scope.resolve(key)
            registry = target.registry
            if version is None:
                doomed = await registry.list_versions(name)
            else:
                doomed = [(await registry.info(name, version))["version"]]
            if not doomed:
                await registry.info(name)  # raises: no such object
            what = ", ".join(f"{target.label}{name}@{v}" for v in doomed)
            if not yes:
                _confirm(f"delete {what} from {target.uri}?")
            await registry.delete(name, version=version)
        out = settings.out
        if out.json_mode:
            out.json({"deleted": [{"name": target.label + name, "version": v} for v in doomed]})
        else:
            out.note(f"deleted {what}")
        return OK

    execute(settings, work)


async def _endpoint(text: str, settings: Settings, scope: Scope | None, create: bool) -> Target:
    """A cp end: a mount of --store, or a registry URI."""
    if scope is not None and scope.store is not None and text in scope.store.list_mounts():
        return Target(scope.store.get_mount(text), f"{text}/")
    return Target(await open_registry(text, settings, create=create), "")


@click.command("cp")
@click.argument("src", metavar="SRC")
@click.argument("key", metavar="NAME[@VERSION]")
@click.argument("dst", metavar="DST")
@click.argument("new_key", metavar="[NAME[@VERSION]]", required=False)
@common
def cp(settings: Settings, src: str, key: str, dst: str, new_key: str | None) -> None:
    """Copy a version from registry SRC to registry DST, files as they are.

    Nothing is decoded: the stored files are streamed across, checked
    against their sha256, and committed in DST with the same write-once
    metadata write as a save. The copy is named NAME (or the new name) and
    gets the given version, else the next number in DST.
    """

    async def work() -> int:
        scope = await open_scope(settings, check=False) if settings.store else None
        source = await _endpoint(src, settings, scope, create=False)
        try:
            target = await _endpoint(dst, settings, scope, create=True)
        except BaseException:
            await source.registry.aclose()
            raise
        try:
            name, version = split_key(key)
            new_name, new_version = split_key(new_key) if new_key else (name, None)
            meta = await stored_meta(source.registry, name, version or LATEST)
            with settings.out.progress(meta.size, f"{name}@{meta.version}") as advance:
                saved = await copy_version(
                    source.registry, meta, target.registry, new_name, new_version, advance
                )
        finally:
            await source.registry.aclose()
            await target.registry.aclose()
            if scope is not None:
                await scope.aclose()
        out = settings.out
        result = {
            "source": {"registry": source.uri, "name": name, "version": meta.version},
            "target": {"registry": target.uri, "name": new_name, "version": saved},
            "files": len(meta.files),
            "bytes": meta.size,
        }
        out.result(
            result,
            note=f"copied {name}@{meta.version} from {source.uri} to {new_name}@{saved} in "
            f"{target.uri} ({count(len(meta.files), 'file')}, {human_size(meta.size)})",
            line=f"{new_name}@{saved}",
        )
        return OK

    execute(settings, work)
