"""The ``registry`` command (also ``python -m registry``).

Nothing in this package is imported by ``import registry``: click, rich and
the commands load only when the command runs.
"""

from __future__ import annotations


def main() -> None:
    """Entry point of the ``registry`` console script."""
    from registry.cli.app import cli

    cli(prog_name="registry")
