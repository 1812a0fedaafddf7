"""The guard's state in the shared Redis: counted by every worker, blocks seen by every
process, listed and lifted by ``smsrelay guard``."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from tests.guard.conftest import REDIS_URL, Clock, redis_guard

NUMBER = "+447400123456"
PUMPED = "+3717800"

# Screens one OTP to the pumped prefix in a process of its own; prints the error code.
SCREEN = """
import asyncio, sys
from smsrelay.guard import Guard, GuardSettings
from smsrelay.guard.redis_state import RedisGuardState
from smsrelay.limits.settings import LimitSettings

async def main() -> None:
    s = GuardSettings(mode="enforce")
    state = RedisGuardState.from_url(sys.argv[1], s, LimitSettings(redis_prefix=sys.argv[2]))
    guard = Guard(s, state)
    decision = await guard.screen("other-process", sys.argv[3], "LV", 0)
    print(decision.error.code if decision.error else "allowed")
    await guard.close()

asyncio.run(main())
"""


async def _run(*args: str, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_number_velocity_is_shared_by_two_workers(redis_prefix: str) -> None:
    """Two guards on one Redis (two workers) count one number together."""
    clock = Clock()
    first, second = (redis_guard(clock, redis_prefix) for _ in range(2))
    try:
        for n in range(5):
            guard = first if n % 2 else second
            assert (await guard.screen(f"n-{n}", NUMBER, "GB", 0)).verdict is None
        sixth = await first.screen("n-5", NUMBER, "GB", 0)
        assert sixth.error is not None and sixth.error.code == "guard-velocity-number"
        again = await second.screen("n-5", NUMBER, "GB", 0)  # a redelivery: not counted again
        assert again.verdict is not None and again.verdict.rule == "velocity-number"
    finally:
        await first.close()
        await second.close()


async def test_prefix_block_holds_across_processes_and_unblock_lifts_it(redis_prefix: str) -> None:
    """A burst with zero conversion blocks the prefix; another process is refused, `guard list`
    shows the rule and figure, `guard unblock` lifts it for every process."""
    clock = Clock(time.time())
    guard = redis_guard(
        clock, redis_prefix, bucket=1, window=600, conversion={"grace": 2, "min_judged": 10}
    )
    try:
        await guard.screen("legit", NUMBER, "GB", 0)
        assert await guard.converted("legit")
        for n in range(12):
            await guard.screen(f"p-{n}", f"{PUMPED}{n:04d}", "LV", 0)
            clock.now += 0.5
        clock.now += 3
        blocked = await guard.screen("p-last", f"{PUMPED}9999", "LV", 0)
        assert blocked.error is not None and blocked.error.code == "guard-conversion"
        env = {"SMSRELAY_REDIS_URL": REDIS_URL, "SMSRELAY_LIMITS__REDIS_PREFIX": redis_prefix}
        other = await _run(sys.executable, "-c", SCREEN, REDIS_URL, redis_prefix, f"{PUMPED}5555")
        assert other.strip().splitlines()[-1] == "guard-blocked"
        cli = [sys.executable, "-m", "smsrelay", "guard"]
        listed = await _run(*cli, "list", env=env)
        assert PUMPED in listed and "guard-conversion" in listed and "0 of 12" in listed
        assert "unblocked" in await _run(*cli, "unblock", PUMPED, env=env)
        assert PUMPED not in await _run(*cli, "list", env=env)
        after = await _run(sys.executable, "-c", SCREEN, REDIS_URL, redis_prefix, f"{PUMPED}6666")
        assert after.strip().splitlines()[-1] == "allowed"
    finally:
        await guard.close()


async def test_conversions_are_credited_once_and_only_for_screened_messages(
    redis_prefix: str,
) -> None:
    """Feedback for a screened OTP counts once; for an unknown id it counts nothing."""
    guard = redis_guard(Clock(), redis_prefix)
    try:
        await guard.screen("c-1", NUMBER, "GB", 0)
        assert await guard.converted("c-1")
        assert not await guard.converted("c-1")
        assert not await guard.converted("never-screened")
    finally:
        await guard.close()


async def test_redis_outage_falls_back_to_the_worker_s_own_counts(private_redis: Any) -> None:
    """With Redis stopped the guard still refuses the sixth OTP to a number (in-process
    counts) and counts the fallback."""
    guard = redis_guard(Clock(), "outage:", url=private_redis.url)
    try:
        assert (await guard.screen("before", NUMBER, "GB", 0)).verdict is None
        private_redis.stop()
        rules = [await guard.screen(f"o-{n}", NUMBER, "GB", 0) for n in range(6)]
        assert [bool(d.verdict) for d in rules] == [False] * 5 + [True]
        assert guard.metrics.fallbacks._value.get() >= 1
    finally:
        await guard.close()
