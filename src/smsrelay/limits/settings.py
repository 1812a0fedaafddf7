"""Settings of the shared limits: ``redis_url``, ``limits``, ``spend_caps``, ``rate_limit``.

``rate_limit`` is a key of each provider's block (``providers.<name>.rate_limit``);
``spend_caps`` and ``limits`` are top-level blocks; ``redis_url`` a top-level key.
"""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CapAmounts",
    "LimitSettings",
    "RateLimit",
    "RateRule",
    "SpendCapSettings",
]

_COUNTRY = re.compile(r"^[A-Z]{2}$")


class RateRule(BaseModel):
    """Sends per second, and how many may go at once after a quiet spell."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: float = Field(gt=0, le=1_000_000)
    # Default: one second's worth, at least 1.
    burst: int | None = Field(default=None, ge=1, le=1_000_000)

    @property
    def capacity(self) -> int:
        """The bucket's size: ``burst``, or one second's worth."""
        return self.burst if self.burst is not None else max(1, int(self.per_second))


class RateLimit(RateRule):
    """``providers.<name>.rate_limit``: the provider's limit, and optionally each sender's."""

    per_sender: RateRule | None = None


class LimitSettings(BaseModel):
    """``limits``: how the shared limits behave, and when Redis cannot be reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Workers expected to share each limit: without Redis, each takes this share.
    expected_workers: int = Field(default=2, ge=1, le=10_000)
    # Tokens leased from Redis live this long in a worker; a batch is
    # per_second * lease_seconds tokens (at least 1, at most the burst).
    lease_seconds: float = Field(default=0.1, gt=0, le=5)
    # The longest a send waits for the provider's rate limit before it moves on.
    max_wait: float = Field(default=1.0, ge=0, le=60)
    # After Redis failed, how long the local fallback is used before Redis is tried again.
    retry_seconds: float = Field(default=5.0, gt=0, le=600)
    # Redis socket timeout: a hung Redis must not stall sends longer than this.
    redis_timeout: float = Field(default=0.5, gt=0, le=30)
    # Prefix of every Redis key smsrelay writes.
    redis_prefix: str = Field(default="smsrelay:", max_length=64)
    # How old a worker's reading of the shared spend counters may be, and how often it
    # adds its spending to them; 0: a Redis read and write for every message.
    cap_sync_seconds: float = Field(default=0.2, ge=0, le=60)
    # The share of each provider's rate limit kept for OTP messages: other kinds send at
    # most (1 - otp_share) of the limit, OTP may use all of it.
    otp_share: float = Field(default=0.2, ge=0, lt=1)


class CapAmounts(BaseModel):
    """A cap per UTC day and per calendar month (UTC), in ``spend_caps.currency``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=6)
    month: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=6)


class SpendCapSettings(BaseModel):
    """``spend_caps``: the most that may be spent, overall, per provider, per country."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    total: CapAmounts = CapAmounts()
    providers: dict[str, CapAmounts] = Field(default_factory=dict)
    countries: dict[str, CapAmounts] = Field(default_factory=dict)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: dict[str, CapAmounts]) -> dict[str, CapAmounts]:
        for country in value:
            if not _COUNTRY.match(country):
                raise ValueError(f"{country[:20]!r} is not a country code like GB")
        return value

    @property
    def any(self) -> bool:
        """True when at least one cap is set."""
        blocks = [self.total, *self.providers.values(), *self.countries.values()]
        return any(b.day is not None or b.month is not None for b in blocks)
