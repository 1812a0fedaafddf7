"""``health``: the delivery window and the circuit breakers' thresholds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AlertSettings", "BreakerSettings", "HealthSettings", "WindowSettings"]


class WindowSettings(BaseModel):
    """``health.window``: the sliding window delivery rates are measured over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(default=600.0, gt=0, le=7 * 86400)
    bucket_seconds: float = Field(default=30.0, gt=0)
    # Beta prior: a provider with no receipts yet is taken to deliver `prior_rate`, as
    # firmly as `prior_weight` receipts would say so.
    prior_rate: float = Field(default=0.9, gt=0, lt=1)
    prior_weight: float = Field(default=10.0, gt=0)
    max_keys: int = Field(default=4096, ge=1)

    @model_validator(mode="after")
    def _check(self) -> WindowSettings:
        if self.bucket_seconds > self.seconds:
            raise ValueError("bucket_seconds must not exceed seconds")
        if self.seconds / self.bucket_seconds > 1000:
            raise ValueError("at most 1000 buckets per window")
        return self


class BreakerSettings(BaseModel):
    """``health.breakers``: when a provider x country is skipped, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Consecutive transport failures (errors or timeouts) that open the breaker.
    failures: int = Field(default=5, ge=1)
    # Consecutive timeouts that open it: fewer, since each one cost a whole timeout.
    timeouts: int = Field(default=2, ge=1)
    # Seconds an open breaker stays open before it lets probes through.
    cool_down: float = Field(default=30.0, gt=0)
    # Sends let through at once while half-open; one success closes the breaker.
    probes: int = Field(default=1, ge=1)
    # Delivery collapse: opens when, over at least `min_samples` receipts, the observed
    # rate is below `min_delivery_rate`, or below (1 - `max_drop`) * its own baseline.
    min_samples: int = Field(default=30, ge=1)
    min_delivery_rate: float = Field(default=0.5, ge=0, le=1)
    max_drop: float = Field(default=0.5, gt=0, le=1)
    # Delivery is judged on the receipts of the last `delivery_window` seconds (and only
    # those since the breaker last closed): short, so a collapse shows within minutes.
    delivery_window: float = Field(default=120.0, gt=0)
    # The baseline is the judged rate averaged over about this many seconds.
    baseline_seconds: float = Field(default=3600.0, gt=0)
    # Open for delivery, it stays open this long (receipts come late: probes need time).
    delivery_cool_down: float = Field(default=120.0, gt=0)


class AlertSettings(BaseModel):
    """``health.alerts``: when a departure from a key's own baseline is an alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Publish alerts to sms.alerts (the metric and the log line are always written).
    publish: bool = True
    # The recent window compared with the baseline (seconds), and the receipts it needs.
    window: float = Field(default=300.0, gt=0, le=86400)
    min_samples: int = Field(default=20, ge=1)
    # delivery_drop: the recent rate is this far below the baseline (0.3: 96 % -> < 67 %).
    drop: float = Field(default=0.3, gt=0, le=1)
    # latency_rise: recent p50 at least `latency_rise` x its baseline and `min_latency` s.
    latency_rise: float = Field(default=2.0, gt=1)
    min_latency: float = Field(default=5.0, ge=0)
    # One alert per type x provider x country per cool-down (seconds).
    cool_down: float = Field(default=900.0, gt=0)


class HealthSettings(BaseModel):
    """``health``: ``window``, ``breakers`` and how a worker reads receipts from the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: WindowSettings = WindowSettings()
    breakers: BreakerSettings = BreakerSettings()
    alerts: AlertSettings = AlertSettings()
    # Receipts are applied by the API and by other workers: every worker reads those
    # applied since its last look from the store, this often (seconds).
    receipt_poll_interval: float = Field(default=2.0, gt=0, le=300)
    # A send still without a final receipt this many seconds later counts as not
    # delivered, for providers that have sent receipts (null: never; see README).
    receipt_deadline: float | None = Field(default=None, gt=0, le=7 * 86400)
    # The delivery report's Prometheus series: recomputed from the store this often, for
    # at most this many provider x country keys (the rest summed into "other").
    report_interval: float = Field(default=60.0, gt=0, le=3600)
    metrics_max_keys: int = Field(default=50, ge=1, le=1000)
