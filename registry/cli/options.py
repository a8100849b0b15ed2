"""Options every command takes, gathered into one ``Settings``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from registry.cli.output import Output

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Settings:
    """Where the registry is and how to talk to it, and how to print."""

    registry: str | None
    store: Path | None
    endpoint: str | None
    region: str | None
    access_key: str | None
    secret_key: str | None
    credentials: Path | None
    cache_dir: Path | None
    verbose: bool
    out: Output


def _file_option(flag: str, help: str) -> Callable[[F], F]:
    """An option naming one file (a folder is refused), given to the command as a Path."""
    return click.option(flag, type=click.Path(dir_okay=False, path_type=Path), help=help)


_OPTIONS = [
    click.option(
        "-r",
        "--registry",
        envvar="REGISTRY_URI",
        metavar="URI",
        help="A folder, file://, s3://bucket/prefix or gs://bucket/prefix "
        "[env REGISTRY_URI; default: local disk at $REGISTRY_HOME or ~/.local/share/registry].",
    ),
    _file_option("--store", "A Store config (.toml or .json): keys become mount/name@version."),
    click.option(
        "--endpoint",
        metavar="URL",
        help="S3-compatible or GCS endpoint, e.g. http://127.0.0.1:9000 "
        "[env AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST].",
    ),
    click.option("--region", help="S3 region [env AWS_REGION, AWS_DEFAULT_REGION]."),
    click.option(
        "--access-key", help="S3 access key (else the AWS chain: AWS_ACCESS_KEY_ID, profiles)."
    ),
    click.option("--secret-key", help="S3 secret key (with --access-key)."),
    _file_option(
        "--credentials",
        "GCS service account JSON (else GOOGLE_APPLICATION_CREDENTIALS or the default).",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Local cache of remote registries [env REGISTRY_CACHE; default ~/.cache/registry].",
    ),
    click.option("--json", "json_mode", is_flag=True, help="Print one JSON document."),
    click.option("-q", "--quiet", is_flag=True, help="Print data only: no summaries, no bars."),
    click.option("-v", "--verbose", is_flag=True, help="Log requests; tracebacks on errors."),
]


def common(func: F) -> F:
    """Add the shared options; the command receives them as ``settings``."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        json_mode = kwargs.pop("json_mode")
        quiet = kwargs.pop("quiet")
        settings = Settings(
            registry=kwargs.pop("registry"),
            store=kwargs.pop("store"),
            endpoint=kwargs.pop("endpoint"),
            region=kwargs.pop("region"),
            access_key=kwargs.pop("access_key"),
            secret_key=kwargs.pop("secret_key"),
            credentials=kwargs.pop("credentials"),
            cache_dir=kwargs.pop("cache_dir"),
            verbose=kwargs.pop("verbose"),
            out=Output(json_mode=json_mode, quiet=quiet),
        )
        return func(settings, **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]
