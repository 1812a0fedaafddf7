"""``guard``: the pumping guard's mode, velocity limits, budget and conversion rule.

Every duration is in seconds. Counters are kept in buckets of ``bucket`` seconds, so a
window slides by whole buckets; a window shorter than one bucket counts one bucket.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ConversionRule",
    "CountryLimit",
    "GuardMode",
    "GuardSettings",
    "NumberLimit",
    "PrefixLimit",
]


# ``off``: nothing runs; ``monitor``: decide and record, send anyway; ``enforce``.
GuardMode = Literal["off", "monitor", "enforce"]


class NumberLimit(BaseModel):
    """OTPs to one number within ``window`` seconds (None: no limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int | None = Field(default=5, ge=1)
    window: float = Field(default=600.0, gt=0, le=86400)


class PrefixLimit(BaseModel):
    """OTPs to one prefix per ``guard.window``: at most ``max(floor, factor x baseline)``
    (``floor`` None: no velocity limit), and at most ``budget`` of estimated cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    floor: int | None = Field(default=50, ge=1)
    factor: float = Field(default=3.0, ge=1.0)
    # A prefix whose judged conversion is at least this is let past its velocity limit
    # (a real surge of logins converts; pumping does not). None: never.
    exempt_conversion: float | None = Field(default=0.5, ge=0, le=1)
    # Estimated cost (parts x price of the first provider planned) per window; None: none.
    budget: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=6)
    # Prices in another currency are not counted against the budget.
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class CountryLimit(BaseModel):
    """OTPs to one country per ``guard.window``: at most ``max(floor, factor x baseline)``.

    Off by default (``floor`` None): a country's volume is the sum of many prefixes'
    and swings with the producer's business; set a floor above your busiest hour.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    floor: int | None = Field(default=None, ge=1)
    factor: float = Field(default=5.0, ge=1.0)


class ConversionRule(BaseModel):
    """Block a prefix whose volume rises while its conversion falls.

    Judged on the prefix's OTPs sent more than ``grace`` seconds ago within the window
    (younger ones may still be used) and since its last block: at least ``min_judged`` of
    them, the window's volume at least ``rise`` x the prefix's baseline, and their
    conversion below ``min_conversion``. The block lasts ``cooldown`` seconds, doubled on
    each repeat within ``memory`` seconds, at most ``max_cooldown``. Judged only while
    conversions are reported at all (any prefix converted within the window): a producer
    that sends no feedback is never blocked for it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_judged: int = Field(default=20, ge=1)
    grace: float = Field(default=60.0, ge=0)
    min_conversion: float = Field(default=0.2, ge=0, le=1)
    rise: float = Field(default=2.0, ge=1.0)
    cooldown: float = Field(default=900.0, gt=0)
    max_cooldown: float = Field(default=43200.0, gt=0)
    memory: float = Field(default=7 * 86400.0, gt=0)


class GuardSettings(BaseModel):
    """``guard``: pumping protection for ``kind: otp`` messages (``smsrelay.guard``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: GuardMode = "off"
    # The prefix of a number is its E.164 form without this many last digits.
    prefix_digits: int = Field(default=4, ge=1, le=10)
    # The velocity window of prefixes and countries, and the conversion rule's.
    window: float = Field(default=3600.0, gt=0, le=7 * 86400)
    bucket: float = Field(default=60.0, gt=0, le=3600)
    # Baselines are moving averages of past windows' volume over this many windows.
    baseline_windows: int = Field(default=24, ge=1, le=10000)
    number: NumberLimit = NumberLimit()
    prefix: PrefixLimit = PrefixLimit()
    country: CountryLimit = CountryLimit()
    conversion: ConversionRule = ConversionRule()

    @model_validator(mode="after")
    def _buckets(self) -> GuardSettings:
        if max(self.window, self.number.window) / self.bucket > 1000:
            raise ValueError("guard.bucket is too small for the windows (at most 1000 buckets)")
        return self
