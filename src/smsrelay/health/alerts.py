"""Alerts: what went wrong with a destination, the figures, and what smsrelay did.

An ``Alert`` is published to the topic exchange ``sms.alerts`` with routing key
``sms.alert.<type>`` (JSON, documented in docs/asyncapi.yaml), counted in
``smsrelay_alerts_total{type}`` and written as one ``alert`` log line. Types:

- ``breaker_open``: a provider x country breaker opened (transport failures, timeouts,
  or a delivery collapse); the reason is the breaker's.
- ``delivery_drop``: the delivery rate of the last ``health.alerts.window`` seconds is
  more than ``drop`` below the key's own baseline (the breaker's baseline: the judged
  rate averaged over ``baseline_seconds``), e.g. 96 % over the day, 40 % now.
- ``latency_rise``: the send → delivered-receipt p50 of the window is ``latency_rise``
  times its own baseline (and at least ``min_latency`` seconds).
- ``spend_cap``: a spend cap was reached (fired by the limits code through ``AlertSink``).

``action`` says what smsrelay did: ``routed_away`` (``routed_to``: the route's other
providers whose breakers let traffic through), ``nothing_left`` (none of them does), or
``none`` (the provider is still sent to: its breaker is closed). One alert per type x
provider x country per ``cool_down``: a flapping key does not flood the exchange.

``AlertSink.publish`` is synchronous and never blocks nor raises: breakers open inside
the dispatcher's bookkeeping. ``AlertQueue`` de-duplicates, logs, counts, and hands the
alert to a background task that publishes it (a broker outage loses alerts, logged;
never a send).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field

from smsrelay.logging import get_logger

__all__ = [
    "ALERT_KEY_PREFIX",
    "Action",
    "Alert",
    "AlertQueue",
    "AlertSink",
    "AlertTransport",
    "AlertType",
    "spend_cap_alert",
]

log = get_logger(__name__)

ALERT_KEY_PREFIX = "sms.alert."  # = smsrelay.topology.ALERT_KEY_PREFIX
QUEUE_SIZE = 1000

Action = Literal["routed_away", "nothing_left", "none"]


class AlertType(StrEnum):
    """What an alert is about; the last word of its routing key."""

    DELIVERY_DROP = "delivery_drop"
    LATENCY_RISE = "latency_rise"
    BREAKER_OPEN = "breaker_open"
    SPEND_CAP = "spend_cap"


class Alert(BaseModel):
    """One alert, as published on ``sms.alerts``."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    type: AlertType
    provider: str | None = None
    country: str | None = None
    # The figures behind it: rates (0..1), baselines, samples, seconds, amounts.
    figures: dict[str, float | int | str | None] = Field(default_factory=dict)
    action: Action = "none"
    routed_to: list[str] = Field(default_factory=list)
    reason: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def routing_key(self) -> str:
        """``sms.alert.<type>``."""
        return f"{ALERT_KEY_PREFIX}{self.type.value}"


def spend_cap_alert(
    scope: str,
    name: str,
    period: str,
    *,
    limit: float | None = None,
    spent: float | None = None,
    currency: str | None = None,
) -> Alert:
    """The alert for a reached spend cap (``scope``: total, provider or country).

    A reached cap leaves its provider out of the plan: the planner moves on to the
    route's other providers, or fails the message when nothing is left.
    """
    return Alert(
        type=AlertType.SPEND_CAP,
        provider=name if scope == "provider" else None,
        country=name if scope == "country" else None,
        figures={
            "scope": scope,
            "name": name,
            "period": period,
            "limit": limit,
            "spent": spent,
            "currency": currency,
        },
        action="routed_away" if scope == "provider" else "nothing_left",
        reason=f"spend cap {scope} {name} ({period}) reached",
    )


class AlertSink(Protocol):
    """Where alerts go. ``publish`` returns at once and never raises."""

    def publish(self, alert: Alert) -> None:
        """Fire ``alert`` (de-duplicated per type x provider x country and cool-down)."""


class AlertTransport(Protocol):
    """The broker side (``smsrelay.amqp.AmqpAlerts``)."""

    async def send(self, routing_key: str, body: bytes, message_id: str) -> None:
        """Publish one alert body; raise when it could not be published."""

    async def close(self) -> None:
        """Release the connection."""


class AlertQueue:
    """The ``AlertSink`` of a process: de-duplicate, log, count, publish in the background."""

    def __init__(
        self,
        transport: AlertTransport | None,
        *,
        cool_down: float,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.cool_down = cool_down
        self.clock = clock
        self._last: dict[tuple[str, str | None, str | None], float] = {}
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.published = 0  # a positive signal for tests
        self._counter = Counter(
            "smsrelay_alerts",
            "Alerts fired, by type",
            ["type"],
            registry=registry,
        ) if registry is not None else None  # fmt: skip

    def publish(self, alert: Alert) -> None:
        """Fire ``alert`` unless the same key fired within the cool-down."""
        key = (alert.type.value, alert.provider, alert.country)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.cool_down:
            return
        self._last[key] = now
        if self._counter is not None:
            self._counter.labels(alert.type.value).inc()
        log.warning(
            "alert",
            type=alert.type.value,
            provider=alert.provider,
            country=alert.country,
            action=alert.action,
            routed_to=alert.routed_to,
            reason=alert.reason,
            figures=alert.figures,
        )
        if self.transport is None:
            return
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            log.warning("alert_dropped", type=alert.type.value, reason="queue full")

    def start(self) -> None:
        """Publish queued alerts in the background until ``close``."""
        if self._task is None and self.transport is not None:
            self._task = asyncio.create_task(self._run(), name="health-alerts")

    async def close(self, grace: float = 2.0) -> None:
        """Publish what is queued (for at most ``grace`` seconds), then stop."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.transport is not None:
            await self.transport.close()

    async def _run(self) -> None:
        assert self.transport is not None
        while True:
            alert = await self._queue.get()
            try:
                body = alert.model_dump_json().encode()
                await self.transport.send(alert.routing_key, body, alert.id)
                self.published += 1
            except Exception as exc:  # the broker is away: the log line and metric remain
                log.warning("alert_unpublished", type=alert.type.value, error=type(exc).__name__)
            finally:
                self._queue.task_done()
