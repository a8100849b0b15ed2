"""One request of a remote backend: retried, translated and logged in one place.

A backend hands :func:`request` one attempt of a request. Transient failures
are retried under the backend's :class:`RetryPolicy`; what still fails is
turned into the registry's exceptions by the backend's ``translate`` (its own
``BackendError``, a bad argument and internal signals pass through as they
are). With DEBUG on for the backend's logger, every attempt is logged: the
operation, the key, the bytes moved and the milliseconds it took. With DEBUG
off nothing is timed or formatted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from registry.backends.retry import RetryPolicy, retry_call
from registry.backends.transfer import Signal
from registry.exceptions import BackendError

__all__ = ["Ambiguity", "request"]

T = TypeVar("T")


async def request(
    attempt: Callable[[], Awaitable[T]],
    *,
    operation: str,
    key: str | None,
    policy: RetryPolicy,
    classify: Callable[[BaseException], bool],
    translate: Callable[[Exception], BackendError],
    logger: logging.Logger,
    on_retry: Callable[[BaseException, int], None] | None = None,
    size: int | Callable[[T], int] | None = None,
) -> T:
    """``attempt()`` until it succeeds or fails for good; ``size`` is the bytes
    sent, or a function of the result that gives the bytes received."""
    if logger.isEnabledFor(logging.DEBUG):
        attempt = _logged(attempt, operation, key, logger, size)
    try:
        return await retry_call(
            attempt,
            classify=classify,
            policy=policy,
            on_retry=on_retry,
            what=lambda: _describe(operation, key),
        )
    except (BackendError, ValueError, Signal):
        raise
    except Exception as exc:
        raise translate(exc) from exc


def _describe(operation: str, key: str | None) -> str:
    return operation if key is None else f"{operation} {key}"


def _logged(
    attempt: Callable[[], Awaitable[T]],
    operation: str,
    key: str | None,
    logger: logging.Logger,
    size: int | Callable[[T], int] | None,
) -> Callable[[], Awaitable[T]]:
    async def timed() -> T:
        start = time.perf_counter()
        try:
            result = await attempt()
        except Exception as exc:
            elapsed = (time.perf_counter() - start) * 1000
            logger.debug("%s: failed after %.1f ms: %r", _describe(operation, key), elapsed, exc)
            raise
        elapsed = (time.perf_counter() - start) * 1000
        nbytes = size(result) if callable(size) else size
        if nbytes is None:
            logger.debug("%s: %.1f ms", _describe(operation, key), elapsed)
        else:
            logger.debug("%s: %d bytes, %.1f ms", _describe(operation, key), nbytes, elapsed)
        return result

    return timed


class Ambiguity:
    """Whether a retried write may already have been applied: an attempt failed
    after its request was sent (the connection died before the answer came).

    A conditional write whose retry then loses its condition may have lost to
    itself; the backend compares what is stored with what it sent.
    """

    def __init__(self, may_have_landed: Callable[[BaseException], bool]) -> None:
        self._may_have_landed = may_have_landed
        self.possible = False

    def note(self, exc: BaseException, failures: int) -> None:
        """An ``on_retry`` hook for :func:`request`."""
        self.possible = self.possible or self._may_have_landed(exc)
