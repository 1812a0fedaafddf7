"""``python -m bench.guard_replay``: SMS pumping replayed against the guard, with its report.

    python -m bench.guard_replay                       # 6 simulated hours, Redis at 127.0.0.1
    python -m bench.guard_replay --hours 2 --local     # in-process state, no Redis
    python -m bench.guard_replay --out docs/guard-replay.md

Legitimate OTPs (many prefixes in 12 countries, 85 % used within minutes, reported as
feedback) run alone for the first hours so baselines form, then four premium-rate
prefixes are pumped (bursts of 25 to 120 OTPs, and one steady trickle) for an hour. The
same traffic (same seed) is replayed in ``enforce`` and in ``monitor`` mode against the
default ``guard:`` settings; each mode has keys of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from smsrelay import logging as smslog
from smsrelay.guard import Guard, GuardSettings, LocalGuardState
from smsrelay.guard.redis_state import RedisGuardState
from smsrelay.guard.replay import AttackPlan, Replay, Report
from smsrelay.guard.state import GuardState
from smsrelay.limits.settings import LimitSettings

TARGET_SENDS = 100
TARGET_LEGIT_SHARE = 0.005


async def _run(mode: str, plan: AttackPlan, redis_url: str | None) -> tuple[Report, float]:
    settings = GuardSettings(mode=mode)  # type: ignore[arg-type]
    prefix = f"bench-guard-{uuid.uuid4().hex[:8]}:"
    state: GuardState
    if redis_url:
        state = RedisGuardState.from_url(redis_url, settings, LimitSettings(redis_prefix=prefix))
    else:
        state = LocalGuardState(settings)
    run = Replay(plan)
    guard = Guard(settings, state, clock=run.clock)
    started = time.perf_counter()
    try:
        report = await run.play(guard)
    finally:
        await guard.close()
        if redis_url:
            await _delete(redis_url, prefix)
    return report, time.perf_counter() - started


async def _delete(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
    finally:
        await client.aclose()


def _verdicts(enforce: Report, monitor: Report) -> list[str]:
    worst = enforce.worst_before_refusal
    differing = sum(1 for m, rule in enforce.decisions.items() if monitor.decisions[m] != rule)
    return [
        f"- each pumped prefix refused within {TARGET_SENDS} sends: worst {worst}"
        f" ({'met' if worst <= TARGET_SENDS else 'MISSED'})",
        f"- legitimate OTPs refused at most {TARGET_LEGIT_SHARE:.1%}:"
        f" {enforce.legit_refused_share:.3%}"
        f" ({'met' if enforce.legit_refused_share <= TARGET_LEGIT_SHARE else 'MISSED'})",
        f"- monitor mode: {differing} of {len(enforce.decisions)} decisions differ from"
        " enforce's; every OTP was sent (its table counts the refusals it recorded)",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours in all")
    parser.add_argument("--attack-hours", type=float, default=1.0)
    parser.add_argument("--legit-per-second", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--local", action="store_true", help="in-process state, no Redis")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()
    smslog.configure("console", "warning")
    plan = AttackPlan(
        seconds=args.hours * 3600,
        legit_per_second=args.legit_per_second,
        attack_start=(args.hours - args.attack_hours - 1) * 3600,
        attack_seconds=args.attack_hours * 3600,
        seed=args.seed,
    )
    redis_url = None if args.local else args.redis_url
    enforce, took_enforce = await _run("enforce", plan, redis_url)
    monitor, took_monitor = await _run("monitor", plan, redis_url)
    load = os.getloadavg()
    lines = [
        "# SMS pumping replayed against the guard",
        "",
        f"`python -m bench.guard_replay --hours {args.hours:g} --seed {args.seed}`"
        f" ({'in-process state' if redis_url is None else 'state in Redis'}); default"
        f" `guard:` settings; {args.hours:g} simulated hours, pumping in hour"
        f" {plan.attack_start / 3600:g} to {(plan.attack_start + plan.attack_seconds) / 3600:g};"
        f" {len(enforce.decisions)} OTPs per mode, replayed in {took_enforce:.0f} s (enforce)"
        f" and {took_monitor:.0f} s (monitor) at load average {load[0]:.1f}.",
        "",
        "## enforce",
        "",
        *enforce.lines(),
        "",
        "## monitor (nothing refused: the same verdicts, recorded)",
        "",
        *monitor.lines(),
        "",
        "## Targets",
        "",
        *_verdicts(enforce, monitor),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
