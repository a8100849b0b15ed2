"""Bounded retries with jittered exponential backoff, for every remote backend.

A backend supplies a ``classify`` function that says whether an exception is
transient (throttling, 5xx, connection reset, timeout). Everything else —
not found, precondition failed, access denied, bad request — is raised at
once: 404 and 412 are answers, not failures, and retrying them would turn a
lost race into a slow lost race.

The delay before attempt ``n + 1`` is drawn uniformly from
``[0, min(max_delay, base_delay * 2**n)]`` ("full jitter"), so that racing
clients that failed together do not come back together. The concurrency
limiter, if any, is taken per attempt inside ``call`` by the caller, never
held while sleeping.

Each retry is logged at WARNING on ``registry.backends.retry``: what failed,
attempt n of m, and the delay before the next one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

__all__ = ["RetryPolicy", "policy_for", "retry_call"]

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    ``max_attempts`` counts the first try (1 = no retry). ``deadline`` bounds
    the total time spent in backoff sleeps plus attempts: no new attempt
    starts after it has passed.
    """

    max_attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 2.0
    deadline: float | None = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be >= 0")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Jittered delay after ``failures`` consecutive failures (>= 1)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (failures - 1)))
        return (rng or random).uniform(0.0, cap)


def policy_for(max_attempts: int, connect_timeout: float, read_timeout: float) -> RetryPolicy:
    """The policy of a remote backend: its deadline never spends more than a
    few connect timeouts (plus one read timeout) on one request."""
    if connect_timeout <= 0 or read_timeout <= 0:
        raise ValueError("timeouts must be > 0")
    return RetryPolicy(
        max_attempts=max_attempts, deadline=max(10.0, 3 * connect_timeout) + read_timeout
    )


async def retry_call(
    call: Callable[[], Awaitable[T]],
    *,
    classify: Callable[[BaseException], bool],
    policy: RetryPolicy,
    on_retry: Callable[[BaseException, int], None] | None = None,
    what: str | Callable[[], str] = "request",
) -> T:
    """Await ``call()`` until it succeeds, retrying while ``classify(exc)`` is true.

    ``on_retry(exc, failures)`` is told about each transient failure that will
    be retried (for logging, or to remember that a write's outcome is
    ambiguous). The last transient exception is re-raised once the attempts
    or the deadline run out. Cancellation is never caught. ``what`` names the
    call (or makes its name, only when needed) in the WARNING logged before
    each retry.
    """
    start = time.monotonic()
    failures = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not classify(exc):
                raise
            failures += 1
            if failures >= policy.max_attempts:
                raise
            delay = policy.delay(failures)
            if policy.deadline is not None and (
                time.monotonic() - start + delay >= policy.deadline
            ):
                raise
            if on_retry is not None:
                on_retry(exc, failures)
            logger.warning(
                "%s failed (attempt %d of %d), retrying in %.3f s: %r",
                what() if callable(what) else what,
                failures,
                policy.max_attempts,
                delay,
                exc,
            )
        await anyio.sleep(delay)
