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
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

__all__ = ["RetryPolicy", "retry_call"]

T = TypeVar("T")


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


async def retry_call(
    call: Callable[[], Awaitable[T]],
    *,
    classify: Callable[[BaseException], bool],
    policy: RetryPolicy,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Await ``call()`` until it succeeds, retrying while ``classify(exc)`` is true.

    ``on_retry(exc, failures)`` is told about each transient failure that will
    be retried (for logging, or to remember that a write's outcome is
    ambiguous). The last transient exception is re-raised once the attempts
    or the deadline run out. Cancellation is never caught.
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
        await anyio.sleep(delay)
