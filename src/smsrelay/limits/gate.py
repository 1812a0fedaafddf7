"""The limits as the worker meets them: one ``LimitGate`` asked before and told after each
attempt, which is also the planner's ``LimitsView``.

Before an attempt (``admit``): the provider's spend caps must allow the message's
estimated cost, then its rate limit must give a token, waiting at most ``wait`` seconds.
A refusal is a ``Refusal`` (``rate`` or ``cap``) and the dispatcher moves on; it is
remembered for ``MEMORY`` seconds so that the planner shows it and leaves a provider at
its cap out of the next plans without asking (``state``, synchronous).

After an attempt the provider accepted (``sent``), its cost counts against the caps:
the actual cost where the provider said it in the caps' currency, else the estimate.
Amounts in another currency are not converted: they are not counted, and a warning
says so once per provider and currency.

A provider's 429 (``throttled``) pauses its key for every worker: back-pressure.

**OTP lane.** With ``limits.otp_share`` > 0 each provider's ``rate_limit`` is split in
two buckets (``with_otp_lanes``): ``<provider>`` at (1 - share) of the limit for every
kind, and ``<provider>~otp`` at share of it. An OTP message takes a token from its own
bucket, else from the shared one, and waits on its own: bulk traffic can use at most
(1 - share) of the limit, so OTP always has its share, and may use all of it when bulk
is idle. A ``per_sender`` limit stays one bucket for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from smsrelay.limits.caps import SpendCaps
from smsrelay.limits.rates import RateLimiter, RateRules
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings
from smsrelay.logging import get_logger
from smsrelay.routing.views import LimitState

__all__ = ["MEMORY", "OTP_LANE", "LimitGate", "Refusal", "otp_key", "with_otp_lanes"]

log = get_logger(__name__)

OTP_LANE = "~otp"
# Seconds a refusal is remembered for the planner (a cap refusal is checked again after).
MEMORY = 1.0
UNLIMITED = LimitState()


def otp_key(provider: str) -> str:
    """The rate-limit key of the share of ``provider``'s limit kept for OTP."""
    return provider + OTP_LANE


def with_otp_lanes(
    limits: Mapping[str, RateLimit | None], share: float
) -> dict[str, RateLimit | None]:
    """Each provider's limit as two buckets: ``1 - share`` for every kind, ``share`` for OTP."""
    out: dict[str, RateLimit | None] = {}
    for name, limit in limits.items():
        if limit is None or share <= 0:
            out[name] = limit
            continue
        out[name] = RateLimit(
            per_second=limit.per_second * (1 - share),
            burst=max(1, round(limit.capacity * (1 - share))),
            per_sender=limit.per_sender,
        )
        out[otp_key(name)] = RateLimit(
            per_second=limit.per_second * share, burst=max(1, round(limit.capacity * share))
        )
    return out


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a provider is not tried now: its rate limit (``rate``) or a spend cap (``cap``)."""

    kind: Literal["rate", "cap"]
    detail: str


class LimitGate:
    """Rate limits and spend caps around each attempt; see the module docstring."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        rules: RateRules,
        caps: SpendCaps | None,
        cap_settings: SpendCapSettings,
        settings: LimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.rules = rules
        self.caps = caps
        self.currency = cap_settings.currency
        self.settings = settings
        self._clock = clock
        self._otp = settings.otp_share > 0
        # (provider, country) -> (state, until when it holds); provider -> rate refusals.
        self._capped: dict[tuple[str, str], tuple[LimitState, float]] = {}
        self._rate_limited: dict[str, float] = {}
        self._warned: set[tuple[str, str]] = set()

    @property
    def active(self) -> bool:
        """True when there is a rate limit or a cap to apply."""
        return self.limiter is not None or self.caps is not None

    @property
    def max_wait(self) -> float:
        """The longest a send waits for a token (``limits.max_wait``)."""
        return self.settings.max_wait

    def limited(self, provider: str) -> bool:
        """True when ``provider`` has a rate limit (its 429s then pause it, see ``throttled``)."""
        return self.limiter is not None and bool(self.rules.keys(provider, None))

    async def admit(
        self,
        provider: str,
        country: str,
        *,
        sender: str | None,
        otp: bool,
        cost: Decimal | None,
        currency: str | None,
        wait: float,
    ) -> Refusal | None:
        """None: send now. Else why not: a cap refuses ``cost``, or no token within ``wait``."""
        if self.caps is not None:
            amount = cost if cost is not None and currency == self.currency else Decimal(0)
            decision = await self.caps.allows(provider, country, amount)
            if not decision.allowed:
                detail = f"{decision.cap} at {decision.spent} of {decision.limit} {self.currency}"
                state = LimitState(cap_reached=True, detail=detail)
                self._capped[(provider, country)] = (state, self._clock() + MEMORY)
                return Refusal("cap", detail)
        if self.limiter is not None and not await self._token(provider, sender, otp, wait):
            self._rate_limited[provider] = self._clock() + MEMORY
            return Refusal("rate", f"rate limit of {provider}: no token within {wait:g} s")
        return None

    async def sent(
        self,
        provider: str,
        country: str,
        *,
        estimated: tuple[Decimal | None, str | None],
        actual: tuple[Decimal | None, str | None],
    ) -> None:
        """Count what an accepted attempt cost against the caps (actual, else estimated)."""
        if self.caps is None:
            return
        for amount, currency in (actual, estimated):
            if amount is not None and currency == self.currency:
                await self.caps.spend(provider, country, amount)
                return
        currency = actual[1] or estimated[1]
        if currency is not None and (provider, currency) not in self._warned:
            self._warned.add((provider, currency))
            log.warning(
                "spend_not_counted", provider=provider, currency=currency, caps=self.currency
            )

    async def throttled(self, provider: str, retry_after: float | None) -> float:
        """The provider answered 429: pause its key(s) for every worker; the pause, in seconds."""
        pause = retry_after if retry_after and retry_after > 0 else self.max_wait or 1.0
        if self.limiter is not None:
            for key in self._keys(provider):
                await self.limiter.penalise(key, pause)
        self._rate_limited[provider] = self._clock() + pause
        return pause

    def state(self, provider: str, country: str) -> LimitState:
        """``LimitsView.state``: refusals seen in the last ``MEMORY`` seconds (no I/O)."""
        if not self._capped and not self._rate_limited:
            return UNLIMITED
        now = self._clock()
        capped = self._capped.get((provider, country))
        if capped is not None:
            if capped[1] > now:
                return capped[0]
            del self._capped[(provider, country)]  # the gate asks the caps again
        until = self._rate_limited.get(provider)
        if until is not None and until > now:
            return LimitState(rate_limited=True, detail="rate limit reached recently")
        return UNLIMITED

    async def close(self) -> None:
        """Release the limits' connections (spend not yet shared is added first)."""
        if self.caps is not None:
            await self.caps.close()
        if self.limiter is not None:
            await self.limiter.close()

    async def _token(self, provider: str, sender: str | None, otp: bool, wait: float) -> bool:
        keys = self.rules.keys(provider, sender)
        if not keys:
            return True
        limiter = self.limiter
        assert limiter is not None
        first, rest = keys[0], keys[1:]
        if otp and self._otp:
            reserved = otp_key(provider)
            got = (
                await limiter.acquire(reserved, wait=0)
                or await limiter.acquire(first, wait=0)
                or await limiter.acquire(reserved, wait=wait)
            )
        else:
            got = await limiter.acquire(first, wait=wait)
        for key in rest:
            got = got and await limiter.acquire(key, wait=wait)
        return got

    def _keys(self, provider: str) -> list[str]:
        keys = self.rules.keys(provider, None)
        return [*keys, otp_key(provider)] if keys and self._otp else keys
