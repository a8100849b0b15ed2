"""The retry policy every remote backend uses: bounded, jittered, logged."""

from __future__ import annotations

import logging
import time

import pytest

from registry.backends.retry import RetryPolicy, policy_for, retry_call


@pytest.mark.anyio
async def test_retry_policy_is_bounded_and_each_retry_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("reset")

    with (
        caplog.at_level(logging.WARNING, logger="registry.backends.retry"),
        pytest.raises(ConnectionResetError),
    ):
        await retry_call(always_fails, classify=lambda e: True, policy=policy, what="put k")
    assert calls == 4
    # a warning before each of the 3 retries: what failed, attempt n of m, the delay
    messages = [r.getMessage() for r in caplog.records if r.name == "registry.backends.retry"]
    assert len(messages) == 3
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert messages[0].startswith("put k failed (attempt 1 of 4), retrying in 0.0")
    assert "ConnectionResetError" in messages[0] and "attempt 3 of 4" in messages[2]

    calls = 0

    async def permanent() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        await retry_call(permanent, classify=lambda e: False, policy=policy)
    assert calls == 1

    slow = RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=0.05, deadline=0.3)
    calls = 0
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        await retry_call(always_fails, classify=lambda e: True, policy=slow)
    assert time.monotonic() - start < 1.0 and 1 < calls < 100
    assert all(0 <= policy.delay(n) <= 0.01 for n in range(1, 20))


def test_policy_for_a_backend_bounds_its_deadline() -> None:
    policy = policy_for(max_attempts=3, connect_timeout=5.0, read_timeout=60.0)
    assert (policy.max_attempts, policy.deadline) == (3, 15.0 + 60.0)
    with pytest.raises(ValueError):
        policy_for(max_attempts=3, connect_timeout=0, read_timeout=1.0)
