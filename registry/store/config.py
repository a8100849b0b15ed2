"""Building a Store from configuration: a mapping, TOML or JSON file.

Mount names map to backend settings; ``${VAR}`` and ``${VAR:-default}`` are
expanded from the environment, since services configure mounts from files
and environment rather than code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry._async import AsyncRegistry
from registry.backends.base import Backend
from registry.store.errors import (
    StoreConfigError,
)
from registry.store.keys import TEMP_MOUNT, validate_mount_name

#: backend kind -> (module, class); imported only when a mount uses it
BACKEND_KINDS: dict[str, tuple[str, str]] = {
    "local": ("registry.backends.local", "LocalBackend"),
    "memory": ("registry.backends.memory", "MemoryBackend"),
    "s3": ("registry.backends.s3", "S3Backend"),
    "gcs": ("registry.backends.gcs", "GCSBackend"),
}
#: AsyncRegistry settings a mount may set, with the type they must have
REGISTRY_SETTINGS: dict[str, str] = {
    "mutable": "bool",
    "version_objects": "bool",
    "allow_pickle": "bool",
    "verify": "str",
    "inline_limit": "int",
    "use_cache": "bool|null",
    "cache_dir": "str",
    "cache_max_bytes": "int|null",
    "cache_max_entries": "int|null",
    "offline": "bool|null",
}
_STORE_KEYS = ("default", "mounts")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def store_arguments(config: Mapping[str, Any]) -> dict[str, Any]:
    """``AsyncStore(**store_arguments(config))`` builds the configured store.

    Format (a dict, or the same as TOML / JSON)::

        default = "models"                      # optional; else "temp"
        [mounts.models]
        backend = "local"                       # local | memory | s3 | gcs
        path = "${DATA_DIR}/models"             # ${VAR} / ${VAR:-fallback}
        version_objects = true                  # any AsyncRegistry setting
        [mounts.shared]
        backend = "s3"
        bucket = "team-bucket"                  # any S3Backend argument
        read_only = true

    Every other key is an argument of the backend's class. ``temp`` is
    always mounted and cannot be configured.
    """
    if not isinstance(config, Mapping):
        raise StoreConfigError(
            f"a store configuration is a mapping with 'mounts' (and optionally 'default'), "
            f"got {type(config).__name__}"
        )
    if unknown := sorted(set(config) - set(_STORE_KEYS)):
        raise StoreConfigError(
            f"unknown store configuration key(s) {unknown}; allowed: {list(_STORE_KEYS)}"
        )
    expanded: dict[str, Any] = _expand_env(dict(config), "config")
    mounts_config = expanded.get("mounts", {})
    if not isinstance(mounts_config, Mapping):
        raise StoreConfigError("'mounts' must map mount names to their settings")
    mounts: dict[str, AsyncRegistry] = {}
    read_only: list[str] = []
    for name, settings in mounts_config.items():
        registry, is_read_only = _build_mount(name, settings)
        mounts[name] = registry
        if is_read_only:
            read_only.append(name)
    default = expanded.get("default", TEMP_MOUNT)
    if default != TEMP_MOUNT and default not in mounts:
        raise StoreConfigError(
            f"default {default!r} is not a configured mount; use one of {[TEMP_MOUNT, *mounts]}"
        )
    if default in read_only:
        raise StoreConfigError(f"default {default!r} is read-only; pick a writable mount")
    return {"mounts": mounts, "default_mount": default, "read_only": read_only}


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a store configuration from a ``.toml`` or ``.json`` file."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise StoreConfigError(f"{file}: a store configuration file must be .toml or .json")
    try:
        if suffix == ".toml":
            with open(file, "rb") as f:
                data: Any = tomllib.load(f)
        else:
            data = json.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreConfigError(f"{file}: not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise StoreConfigError(f"{file}: the top level must be a table/object")
    return data


def _expand_env(value: Any, where: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-fallback}`` in every string value."""
    if isinstance(value, str):
        return _ENV_RE.sub(lambda m: _env_value(m, where), value)
    if isinstance(value, Mapping):
        return {k: _expand_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _env_value(match: re.Match[str], where: str) -> str:
    name, fallback = match.group(1), match.group(2)
    value = os.environ.get(name)
    if value:  # like the shell's ${VAR:-x}: empty counts as unset
        return value
    if fallback is not None:
        return fallback
    if value is not None:
        return value
    raise StoreConfigError(
        f"{where}: environment variable {name} is not set "
        f"(write ${{{name}:-fallback}} to give a fallback)"
    )


def _build_mount(name: Any, settings: Any) -> tuple[AsyncRegistry, bool]:
    where = f"mounts.{name}"
    if name == TEMP_MOUNT:
        raise StoreConfigError(f"{where}: 'temp' is always mounted and cannot be configured")
    try:
        validate_mount_name(name)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(f"{where}: {exc}") from None
    if not isinstance(settings, Mapping):
        raise StoreConfigError(
            f"{where}: a mount is a table of settings, e.g. {{backend = 'local', path = '...'}}"
        )
    options = dict(settings)
    kind = options.pop("backend", None)
    if kind not in BACKEND_KINDS:
        what = "needs a 'backend'" if kind is None else f"has an unknown backend {kind!r}"
        raise StoreConfigError(f"{where} {what}; use one of {sorted(BACKEND_KINDS)}")
    read_only = _coerce(where, "read_only", options.pop("read_only", False), "bool")
    registry_options = {
        key: _coerce(where, key, options.pop(key), kind_)
        for key, kind_ in REGISTRY_SETTINGS.items()
        if key in options
    }
    backend = _build_backend(where, kind, options)
    try:
        return AsyncRegistry(backend=backend, **registry_options), bool(read_only)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(f"{where}: {exc}") from None


def _coerce(where: str, key: str, value: Any, kind: str) -> Any:
    """Check a setting's type; strings (e.g. from ``${VAR}``) convert."""
    if value is None and kind.endswith("|null"):
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    elif kind.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    elif isinstance(value, str):
        return value
    raise StoreConfigError(f"{where}.{key} must be {kind.replace('|', ' or ')}, got {value!r}")


def _backend_class(where: str, kind: str) -> type[Backend]:
    module_name, class_name = BACKEND_KINDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # an optional dependency: its error names the extra to install
        raise StoreConfigError(
            f"{where}: backend {kind!r} is not available in this version of registry "
            f"({module_name} is missing)"
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise StoreConfigError(f"{where}: {module_name} has no backend class {class_name}")
    return cls


def _build_backend(where: str, kind: str, options: dict[str, Any]) -> Backend:
    cls = _backend_class(where, kind)
    if kind == "local":
        if "path" not in options:
            raise StoreConfigError(f"{where}: a local mount needs 'path' (its folder)")
        options["uri"] = options.pop("path")
    params = inspect.signature(cls).parameters
    accepted = sorted(
        n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )
    if kind == "local":
        accepted = ["path" if n == "uri" else n for n in accepted]
    if unknown := sorted(set(options) - set(params)):
        raise StoreConfigError(
            f"{where}: unknown setting(s) {unknown} for backend {kind!r}; accepted: "
            f"backend, read_only, {', '.join(accepted)}, {', '.join(REGISTRY_SETTINGS)}"
        )
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(f"{where}: {exc}") from None
