"""Refused webhooks: every one counted, only a sample logged and recorded.

Anyone can post a forged receipt, so a refusal must cost almost nothing and leave a
bounded trace. Every refusal increments ``smsrelay_receipt_refusals_total`` (labels:
the provider's configured name and the kind of refusal); per provider and kind, a
token bucket lets ``burst`` refusals through to the log and the ``receipt_refusals``
table, then one every ``every`` seconds. The one let through says how many were only
counted since the previous one. Labels and buckets are keyed by configured provider
names (an unknown name is a 404 before this point) and the five kinds below, so a
flood from any number of sources grows neither the log, nor the table, nor memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from smsrelay.errors import (
    BadSignature,
    MalformedReceipt,
    OversizedReceipt,
    ReceiptError,
    ReplayedReceipt,
    StaleReceipt,
)

# Most specific first: the first class the refusal is an instance of names its kind.
KINDS: tuple[tuple[type[ReceiptError], str], ...] = (
    (BadSignature, "bad_signature"),
    (ReplayedReceipt, "replayed"),
    (StaleReceipt, "stale"),
    (OversizedReceipt, "oversized"),
    (MalformedReceipt, "malformed"),
)


def kind_of(exc: ReceiptError) -> str:
    """The refusal's kind, a bounded label: bad_signature, replayed, stale, oversized, malformed."""
    return next((kind for cls, kind in KINDS if isinstance(exc, cls)), "malformed")


@dataclass
class _Bucket:
    tokens: float
    at: float
    suppressed: int = 0


@dataclass
class RefusalSampler:
    """Decides which refusals are logged and recorded (see the module docstring)."""

    burst: int = 5
    every: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def admit(self, provider: str, kind: str) -> int | None:
        """None when this refusal is only counted; else how many were skipped before it."""
        now = self.clock()
        bucket = self._buckets.setdefault((provider, kind), _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.every)
        bucket.at = now
        if bucket.tokens < 1:
            bucket.suppressed += 1
            return None
        bucket.tokens -= 1
        skipped, bucket.suppressed = bucket.suppressed, 0
        return skipped
