"""Where things live on a backend (DESIGN §4).

    _registry.json                      settings + materializer table
    meta/<name>/<version key>.json      commit point of one version
    heads/<name>.json                   greatest version of a name: a checked hint
                                        that makes "latest" and auto-increment O(1)
                                        (core/heads.py)
    objects/<name>/<uuid>/<files...>    artifacts, written before the commit
    aliases/<name>/<alias>.json         where an alias points (core/aliases.py)
    retention/<name>.json               retention policy of a name, and
    retention/@registry.json            the registry-wide one (core/retention.py)

An empty metadata file is a tombstone: the version was deleted, and its
number is never handed out again by auto-increment.
"""

from __future__ import annotations

SETTINGS_KEY = "_registry.json"
META_ROOT = "meta/"
OBJECTS_ROOT = "objects/"
META_SUFFIX = ".json"
HEADS_ROOT = "heads/"
ALIASES_ROOT = "aliases/"
RETENTION_ROOT = "retention/"
# '@' is never part of a name, so this key cannot be a name's policy
RETENTION_DEFAULT = "@registry"


def meta_prefix(name: str) -> str:
    return f"{META_ROOT}{name}/"


def meta_key(name: str, version_key: str) -> str:
    return f"{META_ROOT}{name}/{version_key}{META_SUFFIX}"


def head_key(name: str) -> str:
    return f"{HEADS_ROOT}{name}{META_SUFFIX}"


def objects_folder(name: str, uuid: str) -> str:
    """The uuid folder's key prefix, without the trailing '/'."""
    return f"{OBJECTS_ROOT}{name}/{uuid}"


def split_meta_key(key: str) -> tuple[str, str] | None:
    """``meta/<name>/<vkey>.json`` -> (name, vkey); None for anything else."""
    if not key.startswith(META_ROOT) or not key.endswith(META_SUFFIX):
        return None
    parts = key[len(META_ROOT) : -len(META_SUFFIX)].split("/")
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


def alias_prefix(name: str) -> str:
    return f"{ALIASES_ROOT}{name}/"


def alias_key(name: str, alias: str) -> str:
    return f"{ALIASES_ROOT}{name}/{alias}{META_SUFFIX}"


def retention_key(name: str | None) -> str:
    """The policy of ``name``; None: the registry-wide one."""
    return f"{RETENTION_ROOT}{RETENTION_DEFAULT if name is None else name}{META_SUFFIX}"
