"""Running a command's async body: logging, one event loop, and errors as one
line on stderr with the exit code they deserve."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Awaitable, Callable

import anyio

from registry.cli.exits import exit_code, one_line
from registry.cli.options import Settings


def configure_logging(verbose: bool) -> None:
    logger = logging.getLogger("registry")
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    else:
        # Retries and cache notices are noise here: what failed for good is
        # reported once, as the error line.
        logger.setLevel(logging.ERROR)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def execute(settings: Settings, work: Callable[[], Awaitable[int]]) -> None:
    """Run ``work`` and exit with its code, or with the code of its error."""
    configure_logging(settings.verbose)
    try:
        code = anyio.run(work)
    except (Exception, KeyboardInterrupt) as raised:
        exc = _leaf(raised)
        if settings.verbose:
            traceback.print_exception(raised)
        sys.stderr.write(f"registry: error: {one_line(exc)}\n")
        sys.exit(exit_code(exc))
    sys.exit(code)
