"""``RedisGuardState``: the guard's counters and blocks in Redis, shared by every worker.

Keys (under ``limits.redis_prefix`` + ``guard:``): ``n:<number>``, ``p:<prefix>``,
``c:<country>`` hashes of bucketed counters (``s<bucket>`` sends, ``c<bucket>``
conversions, ``k<bucket>`` cost in micro-units) and baselines (``bp``, ``bc``, ``base``,
``ub``: the end of the last block); ``g``, conversions of any prefix; ``m:<id>``, what a
message's conversion is credited to (expires with the window); ``b:<prefix>``, a block
(expires with it); ``s:<prefix>``, the block's repeats (expire after
``guard.conversion.memory``). ``observe`` is one Lua script: one round trip per OTP.

Redis unreachable: one warning per outage, ``smsrelay_guard_fallback``, and for
``limits.retry_seconds`` the worker judges with its own in-process state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smsrelay.guard.settings import GuardSettings
from smsrelay.guard.state import (
    Block,
    Figures,
    LocalGuardState,
    Observation,
    cooldown,
    floor_or_unlimited,
)
from smsrelay.limits.redis_client import connect
from smsrelay.limits.settings import LimitSettings
from smsrelay.logging import get_logger

__all__ = ["RedisGuardState"]

log = get_logger(__name__)

# KEYS: number, prefix, country, global, message, block.
# ARGV: now, bucket, number window, window, grace, cost, prefix, prefix floor, prefix
# factor, country floor, country factor, alpha, baseline TTL.
OBSERVE = """
local now, size = tonumber(ARGV[1]), tonumber(ARGV[2])
local nwin, win, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cost, alpha, keep = tonumber(ARGV[6]), tonumber(ARGV[12]), tonumber(ARGV[13])
local b = math.floor(now / size)
local counted = redis.call('SET', KEYS[5], ARGV[7] .. '|' .. b, 'NX', 'EX',
  math.ceil(win + size)) ~= false
local function span(w) return math.max(1, math.ceil(w / size)) end

-- Sums of the buckets since `oldest` (older ones deleted); judged: sends and
-- conversions of buckets wholly older than the grace and not before `ub`.
local function scan(key, oldest)
  local all = redis.call('HGETALL', key)
  local out = {s = 0, c = 0, k = 0, r = 0, js = 0, jc = 0, jr = 0, ub = 0, bp = nil, bc = 0,
    base = nil}
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if f == 'ub' then out.ub = tonumber(v)
    elseif f == 'bp' then out.bp = tonumber(v)
    elseif f == 'bc' then out.bc = tonumber(v)
    elseif f == 'base' then out.base = tonumber(v)
    else
      local kind, idx = string.sub(f, 1, 1), tonumber(string.sub(f, 2))
      if idx < oldest then redis.call('HDEL', key, f)
      else out[kind] = out[kind] + tonumber(v) end
    end
  end
  for i = 1, #all, 2 do
    local kind, idx = string.sub(all[i], 1, 1), tonumber(string.sub(all[i], 2))
    if (kind == 's' or kind == 'c' or kind == 'r') and idx >= oldest
      and (idx + 1) * size <= now - grace and idx * size >= out.ub then
      out['j' .. kind] = out['j' .. kind] + tonumber(all[i + 1])
    end
  end
  return out
end

-- Close finished windows into the baseline; count this OTP in the current one.
local function roll(key, out, floor, factor)
  local period = math.floor(now / win)
  local bp, bc, base = out.bp or period, out.bc, out.base
  if period > bp then
    local done = math.min(bc, math.max(floor, factor * (base or 0)))
    local decay = (1 - alpha) ^ (period - bp - 1)
    if base == nil then base = done * decay
    else base = base * (1 - alpha) ^ (period - bp) + alpha * done * decay end
    bp, bc = period, 0
  end
  if counted then bc = bc + 1 end
  redis.call('HSET', key, 'bp', bp, 'bc', bc)
  if base ~= nil then redis.call('HSET', key, 'base', tostring(base)) end
  redis.call('EXPIRE', key, keep)
  return base or 0
end

local number = scan(KEYS[1], b - span(nwin) + 1)
local prefix = scan(KEYS[2], b - span(win) + 1)
local country = scan(KEYS[3], b - span(win) + 1)
local seen = scan(KEYS[4], b - span(win) + 1)
local pbase = roll(KEYS[2], prefix, tonumber(ARGV[8]), tonumber(ARGV[9]))
local cbase = roll(KEYS[3], country, tonumber(ARGV[10]), tonumber(ARGV[11]))
if counted then
  redis.call('HINCRBY', KEYS[1], 's' .. b, 1)
  redis.call('EXPIRE', KEYS[1], math.ceil(nwin + size))
  redis.call('HINCRBY', KEYS[2], 's' .. b, 1)
  redis.call('HINCRBY', KEYS[3], 's' .. b, 1)
  if cost > 0 then redis.call('HINCRBY', KEYS[2], 'k' .. b, cost) end
  number.s, prefix.s, country.s = number.s + 1, prefix.s + 1, country.s + 1
  prefix.k = prefix.k + cost
end
return {counted and 1 or 0, number.s, prefix.s, tostring(pbase), prefix.k, prefix.js - prefix.jr,
  prefix.jc,
  country.s, tostring(cbase), seen.c, redis.call('GET', KEYS[6]) or false}
"""

# KEYS: block, strikes, prefix. ARGV: rule, detail, now, base cooldown, max, memory.
BLOCK = """
local now = tonumber(ARGV[3])
local current = redis.call('GET', KEYS[1])
if current then
  local untl = tonumber(string.match(current, '^[^|]*|([^|]*)|'))
  if untl > now then return current end
end
local strikes = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[6])))
local length = math.min(tonumber(ARGV[4]) * 2 ^ math.min(strikes - 1, 60), tonumber(ARGV[5]))
local untl = now + length
local value = ARGV[1] .. '|' .. string.format('%.3f', untl) .. '|' .. strikes .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], value, 'PX', math.ceil(length * 1000))
redis.call('HSET', KEYS[3], 'ub', string.format('%.3f', untl))
return value
"""

# KEYS: prefix, message. ARGV: bucket. A refused OTP is not judged and not credited.
REFUSED = """
redis.call('HINCRBY', KEYS[1], 'r' .. ARGV[1], 1)
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: message, global. ARGV: the prefix hashes' key prefix.
CONVERTED = """
local sent = redis.call('GET', KEYS[1])
if not sent then return 0 end
redis.call('DEL', KEYS[1])
local prefix, b = string.match(sent, '^(.*)|(%-?%d+)$')
redis.call('HINCRBY', ARGV[1] .. prefix, 'c' .. b, 1)
redis.call('HINCRBY', KEYS[2], 'c' .. b, 1)
return 1
"""


class RedisGuardState:
    """``GuardState`` shared through Redis; see the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: GuardSettings,
        limits: LimitSettings,
        *,
        on_fallback: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.keys = limits.redis_prefix + "guard:"
        self._client = client
        self._observe = client.register_script(OBSERVE)
        self._block = client.register_script(BLOCK)
        self._converted = client.register_script(CONVERTED)
        self._refused = client.register_script(REFUSED)
        self._local = LocalGuardState(settings)
        self._on_fallback = on_fallback
        self._monotonic = monotonic
        self._down_until = 0.0
        self._failing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: GuardSettings,
        limits: LimitSettings,
        on_fallback: Callable[[], None] | None = None,
    ) -> RedisGuardState:
        """A state with its own connection pool to ``url``."""
        return cls(connect(url, limits), settings, limits, on_fallback=on_fallback)

    @property
    def degraded(self) -> bool:
        """True while the in-process fallback is in use."""
        return self._monotonic() < self._down_until

    async def observe(self, seen: Observation) -> Figures:
        """See ``GuardState.observe``."""
        if not self.degraded:
            try:
                answer = await self._observe(keys=self._observe_keys(seen), args=self._args(seen))
                self._up()
                return _figures(answer, seen)
            except (RedisError, OSError) as exc:
                self._down(exc)
        return await self._local.observe(seen)

    def _observe_keys(self, seen: Observation) -> list[str]:
        k = self.keys
        return [
            f"{k}n:{seen.number}",
            f"{k}p:{seen.prefix}",
            f"{k}c:{seen.country}",
            f"{k}g",
            f"{k}m:{seen.message_id}",
            f"{k}b:{seen.prefix}",
        ]

    def _args(self, seen: Observation) -> list[Any]:
        s = self.settings
        keep = math.ceil(s.window * max(2, s.baseline_windows))
        return [
            repr(seen.now),
            repr(s.bucket),
            repr(s.number.window),
            repr(s.window),
            repr(s.conversion.grace),
            seen.cost_micros,
            seen.prefix,
            repr(floor_or_unlimited(s.prefix.floor)),
            repr(s.prefix.factor),
            repr(floor_or_unlimited(s.country.floor)),
            repr(s.country.factor),
            repr(1 / s.baseline_windows),
            keep,
        ]

    async def block(self, prefix: str, rule: str, detail: str, now: float) -> Block:
        """See ``GuardState.block``."""
        if not self.degraded:
            try:
                c = self.settings.conversion
                raw = await self._block(
                    keys=[
                        f"{self.keys}b:{prefix}",
                        f"{self.keys}s:{prefix}",
                        f"{self.keys}p:{prefix}",
                    ],
                    args=[
                        rule,
                        detail,
                        repr(now),
                        repr(cooldown(self.settings, 1)),
                        repr(c.max_cooldown),
                        repr(c.memory),
                    ],
                )
                found = _block(raw.decode(), prefix)
                if found is not None:
                    return found
            except (RedisError, OSError) as exc:
                self._down(exc)
        return await self._local.block(prefix, rule, detail, now)

    async def refused(self, seen: Observation) -> None:
        """See ``GuardState.refused``."""
        if not self.degraded:
            try:
                keys = [f"{self.keys}p:{seen.prefix}", f"{self.keys}m:{seen.message_id}"]
                await self._refused(keys=keys, args=[math.floor(seen.now / self.settings.bucket)])
                return
            except (RedisError, OSError) as exc:
                self._down(exc)
        await self._local.refused(seen)

    async def converted(self, message_id: str, now: float) -> bool:
        """See ``GuardState.converted``."""
        try:
            done = await self._converted(
                keys=[f"{self.keys}m:{message_id}", f"{self.keys}g"], args=[f"{self.keys}p:"]
            )
        except (RedisError, OSError) as exc:
            self._down(exc)
            return await self._local.converted(message_id, now)
        return bool(done)

    async def blocks(self, now: float) -> list[Block]:
        """See ``GuardState.blocks``."""
        found = []
        async for key in self._client.scan_iter(match=f"{self.keys}b:*", count=500):
            raw = await self._client.get(key)
            name = key.decode() if isinstance(key, bytes) else str(key)
            prefix = name.removeprefix(f"{self.keys}b:")
            block = _block(_text(raw), prefix) if raw else None
            if block is not None and block.until > now:
                found.append(block)
        return sorted(found, key=lambda b: b.prefix)

    async def unblock(self, prefix: str, now: float) -> bool:
        """See ``GuardState.unblock``."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(f"{self.keys}b:{prefix}")
            pipe.delete(f"{self.keys}b:{prefix}", f"{self.keys}s:{prefix}")
            pipe.hset(f"{self.keys}p:{prefix}", "ub", f"{now:.3f}")
            raw, _, _ = await pipe.execute()
        block = _block(raw.decode(), prefix) if raw else None
        await self._local.unblock(prefix, now)
        return block is not None and block.until > now

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _up(self) -> None:
        if self._failing:
            self._failing = False
            log.info("guard_shared_again")

    def _down(self, exc: BaseException) -> None:
        self._down_until = self._monotonic() + self.limits.retry_seconds
        if self._on_fallback is not None:
            self._on_fallback()
        if self._failing:
            return
        self._failing = True
        log.warning(
            "guard_fallback",
            problem=type(exc).__name__,
            state="in-process",
            retry_in=self.limits.retry_seconds,
        )


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _figures(answer: list[Any], seen: Observation) -> Figures:
    raw = answer[10]
    block = _block(raw.decode(), seen.prefix) if raw else None
    return Figures(
        counted=bool(answer[0]),
        number_sent=int(answer[1]),
        prefix_sent=int(answer[2]),
        prefix_baseline=float(answer[3]),
        prefix_cost_micros=int(answer[4]),
        judged_sent=int(answer[5]),
        judged_converted=int(answer[6]),
        country_sent=int(answer[7]),
        country_baseline=float(answer[8]),
        conversions_seen=int(answer[9]),
        block=block if block is not None and block.until > seen.now else None,
    )


def _block(raw: str, prefix: str) -> Block | None:
    """``rule|until|strikes|detail`` as a Block (None if unreadable)."""
    parts = raw.split("|", 3)
    if len(parts) != 4:
        return None
    rule, until, strikes, detail = parts
    try:
        return Block(prefix, rule, float(until), int(strikes), detail)
    except ValueError:
        return None
