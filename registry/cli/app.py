"""The ``registry`` command group: one subcommand per module's commands."""

from __future__ import annotations

import click

from registry.cli.browse import info, ls, versions
from registry.cli.doctor import doctor
from registry.cli.exits import EPILOG
from registry.cli.lifecycle import alias, find
from registry.cli.maintain import cache, gc, verify
from registry.cli.transfer import cp, get, put, rm


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="versioned-registry", prog_name="registry")
def cli() -> None:
    """Inspect, move and maintain versioned registries on local disk, S3 and GCS.

    Every command takes -r URI (or REGISTRY_URI): a folder, s3://bucket/prefix
    or gs://bucket/prefix; or --store FILE for mount/name@version keys. Use
    --json for machine-readable output; in a pipe, output is plain
    tab-separated lines.
    """


for command in (ls, versions, info, get, put, rm, cp, alias, find, verify, gc, cache, doctor):
    cli.add_command(command)
