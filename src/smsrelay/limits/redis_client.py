"""The Redis client the shared limits use: short timeouts and no retries of its own."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from smsrelay.limits.settings import LimitSettings

__all__ = ["connect"]


def connect(url: str, settings: LimitSettings) -> aioredis.Redis:
    """A client with its own pool. redis-py retries a failed command 10 times with backoff
    by default: a send would stall for seconds on a Redis outage. The limits fall back to
    their local form at the first failure instead, so the client does not retry."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(NoBackoff(), 0),
    )
