"""A worker-like process for the limits tests: acquires tokens or spends against caps.

Run as ``python -m tests.limits.worker '<json>'``. It prints ``ready``, waits for a line
on stdin (so both processes start together), works, and prints one JSON line of results.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from decimal import Decimal
from typing import Any

from smsrelay.limits.rates import RateRules
from smsrelay.limits.redis_caps import RedisSpendCaps
from smsrelay.limits.redis_rates import RedisRateLimiter
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings


async def rates(conf: dict[str, Any]) -> dict[str, Any]:
    settings = LimitSettings(redis_prefix=conf["prefix"], lease_seconds=conf["lease"])
    rules = RateRules({"p": RateLimit(per_second=conf["rate"], burst=conf["burst"])})
    limiter = RedisRateLimiter.from_url(conf["url"], rules, settings)
    granted: list[float] = []
    stop = time.time() + conf["seconds"]

    async def sender() -> None:
        while time.time() < stop:
            if await limiter.acquire("p", wait=0.5):
                granted.append(time.time())

    _go()
    await asyncio.gather(*(sender() for _ in range(conf["senders"])))
    await limiter.close()
    return {"granted": granted, "leases": limiter.leases}


async def caps(conf: dict[str, Any]) -> dict[str, Any]:
    # Spending in a tight loop: the exact mode (a Redis read and write per send) is tested.
    settings = LimitSettings(redis_prefix=conf["prefix"], cap_sync_seconds=conf.get("sync", 0))
    spend_caps = SpendCapSettings.model_validate(conf["caps"])
    limits = RedisSpendCaps.from_url(conf["url"], spend_caps, settings)
    amount = Decimal(conf["amount"])
    sent = 0
    _go()
    while (await limits.allows("a", "GB", amount)).allowed:
        await limits.spend("a", "GB", amount)
        sent += 1
    other = (await limits.allows("b", "GB", amount)).allowed
    await limits.close()
    return {"sent": sent, "other_provider_allowed": other}


def _go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def main() -> None:
    conf = json.loads(sys.argv[1])
    work = rates if conf["job"] == "rates" else caps
    print(json.dumps(asyncio.run(work(conf))), flush=True)


if __name__ == "__main__":
    main()
