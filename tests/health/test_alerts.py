"""Alerts: fired on departures from a key's baseline and on breakers opening, de-duplicated,
counted, and published to ``sms.alerts`` on the real broker by a real worker."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import CollectorRegistry

from smsrelay import topology
from smsrelay.health import HealthMonitor, HealthSettings, SendOutcome
from smsrelay.health.alert_watch import AlertWatch
from smsrelay.health.alerts import (
    ALERT_KEY_PREFIX,
    Alert,
    AlertQueue,
    AlertType,
    spend_cap_alert,
)
from smsrelay.health.settings import AlertSettings, BreakerSettings
from smsrelay.models import Receipt, ReceiptStatus
from smsrelay.store import SqlStore
from smsrelay.store.receipts import ReceiptStore
from smsrelay.topology import declare_alerts_exchange
from tests.conftest import eventually
from tests.integration.harness import EventLog, event_log, publish_raw, request, running_worker
from tests.test_contract_doc import CHANNELS, _validator


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class Kept:
    """An ``AlertSink`` that keeps what it was given."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def publish(self, alert: Alert) -> None:
        self.alerts.append(alert)


def _watch(
    clock: Clock, routes: Sequence[str] = ("a", "b"), **alerts: Any
) -> tuple[HealthMonitor, Kept, AlertWatch]:
    breakers = BreakerSettings(min_samples=10, failures=3)
    monitor = HealthMonitor(HealthSettings(breakers=breakers), clock=clock)
    kept = Kept()
    settings = AlertSettings(min_samples=10, **alerts)
    return monitor, kept, AlertWatch(monitor, kept, settings, lambda p, c: list(routes))


def _receipts(monitor: HealthMonitor, delivered: int, undelivered: int, latency: float) -> None:
    for _ in range(delivered):
        monitor.record_receipt("a", "GB", True, latency)
    for _ in range(undelivered):
        monitor.record_receipt("a", "GB", False, None)


def test_a_breaker_opening_alerts_with_where_traffic_went() -> None:
    """Transport failures open a's GB breaker: one breaker_open alert, routed away to b."""
    monitor, kept, _ = _watch(Clock())
    for _ in range(3):
        monitor.record_send("a", "GB", SendOutcome.TRANSIENT)
    (alert,) = kept.alerts
    assert (alert.type, alert.provider, alert.country) == (AlertType.BREAKER_OPEN, "a", "GB")
    assert (alert.action, alert.routed_to) == ("routed_away", ["b"])
    assert alert.figures["transient"] == 3 and "3 transport failures" in alert.reason


def test_nothing_left_when_no_other_provider_can_take_it() -> None:
    """b's breaker is open too: a's alert says nothing_left."""
    monitor, kept, _ = _watch(Clock())
    for name in ("b", "a"):
        for _ in range(3):
            monitor.record_send(name, "GB", SendOutcome.TRANSIENT)
    assert [(a.provider, a.action) for a in kept.alerts][-1] == ("a", "nothing_left")


def test_delivery_dropping_below_its_baseline_alerts_once() -> None:
    """96 % then 40 %: a delivery_drop alert naming both figures; the watch alone does not repeat it."""
    clock = Clock()
    monitor, kept, watch = _watch(clock)
    _receipts(monitor, delivered=48, undelivered=2, latency=2.0)
    watch.check()
    assert kept.alerts == []
    clock.now += 600  # the first window is behind the alert window now
    _receipts(monitor, delivered=4, undelivered=6, latency=2.0)
    watch.check()
    drops = [a for a in kept.alerts if a.type is AlertType.DELIVERY_DROP]
    assert drops, kept.alerts
    assert drops[0].figures["delivery_rate"] == 0.4
    assert drops[0].figures["baseline"] is not None and drops[0].figures["baseline"] >= 0.9


def test_latency_rising_above_its_baseline_alerts() -> None:
    """Receipts that took 2 s now take 60 s: a latency_rise alert; the breaker stays closed (action none)."""
    clock = Clock()
    monitor, kept, watch = _watch(clock)
    _receipts(monitor, delivered=20, undelivered=0, latency=2.0)
    watch.check()
    clock.now += 600
    _receipts(monitor, delivered=20, undelivered=0, latency=60.0)
    watch.check()
    (alert,) = kept.alerts
    assert alert.type is AlertType.LATENCY_RISE and alert.action == "none"
    assert alert.figures["latency_p50"] == 60 and alert.figures["baseline_p50"] == 2


def test_the_queue_deduplicates_per_key_and_cool_down_and_counts() -> None:
    """The same type x provider x country fires once per cool-down; another country fires; each is counted."""
    clock, registry = Clock(), CollectorRegistry()
    queue = AlertQueue(None, cool_down=60, registry=registry, clock=clock)
    for country in ("GB", "GB", "FR"):
        queue.publish(Alert(type=AlertType.BREAKER_OPEN, provider="a", country=country))
    assert registry.get_sample_value("smsrelay_alerts_total", {"type": "breaker_open"}) == 2
    clock.now += 61
    queue.publish(Alert(type=AlertType.BREAKER_OPEN, provider="a", country="GB"))
    assert registry.get_sample_value("smsrelay_alerts_total", {"type": "breaker_open"}) == 3


@asynccontextmanager
async def _alert_queue(amqp_url: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every alert published to ``sms.alerts`` in the vhost, as JSON with its routing key."""
    got: list[dict[str, Any]] = []

    async def on(message: AbstractIncomingMessage) -> None:
        async with message.process():
            got.append({"routing_key": message.routing_key, **json.loads(message.body)})

    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_alerts_exchange(channel)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="sms.alert.#")
        await queue.consume(on)
        yield got


async def _apply(
    store: SqlStore, events: EventLog, ids: Sequence[str], status: ReceiptStatus
) -> None:
    receipts = ReceiptStore(store)
    for mid in ids:
        pmid = next(e["provider_message_id"] for e in events.of(mid) if e["state"] == "sent")
        receipt = Receipt(provider_message_id=pmid, status=status, provider_status=status.value)
        await receipts.accept("cheap", uuid.uuid4().hex, [receipt], datetime.now(UTC))


async def test_a_delivery_collapse_is_published_on_sms_alerts(amqp_url: str, pg_url: str) -> None:
    """GB receipts collapse from 100 % to 0 %: sms.alert.breaker_open (routed away to backup) and sms.alert.delivery_drop arrive on the broker."""
    run = uuid.uuid4().hex[:6]
    overrides: dict[str, Any] = {
        "providers": {"cheap": {"type": "simulator"}, "backup": {"type": "simulator"}},
        "routes": {"*": ["cheap", "backup"]},
        "health": {
            "receipt_poll_interval": 0.1,
            "breakers": {"min_samples": 8},
            "alerts": {"min_samples": 8},
        },
    }
    good = [f"good-{run}-{i}" for i in range(10)]
    bad = [f"bad-{run}-{i}" for i in range(25)]
    api_store = SqlStore.from_url(pg_url)
    try:
        async with (
            _alert_queue(amqp_url) as alerts,
            event_log(amqp_url) as events,
            running_worker(amqp_url, pg_url, **overrides) as rt,
        ):
            bodies = [request(m, "+447400123453") for m in good + bad]
            await publish_raw(amqp_url, bodies)
            await eventually(lambda: all("sent" in events.states(m) for m in good + bad))
            await _apply(api_store, events, good, ReceiptStatus.DELIVERED)
            feed = rt.receipt_feed
            assert feed is not None
            polls = feed.polls
            await eventually(lambda: feed.polls > polls + 1)  # the baseline is taken
            await _apply(api_store, events, bad, ReceiptStatus.UNDELIVERED)
            types = {"sms.alert.breaker_open", "sms.alert.delivery_drop"}
            await eventually(lambda: types <= {a["routing_key"] for a in alerts})
            counted = rt.metrics.registry.get_sample_value(
                "smsrelay_alerts_total", {"type": "breaker_open"}
            )
    finally:
        await api_store.close()
    (opened,) = [a for a in alerts if a["type"] == "breaker_open"]
    assert (opened["provider"], opened["country"]) == ("cheap", "GB")
    assert (opened["action"], opened["routed_to"]) == ("routed_away", ["backup"])
    assert opened["figures"]["baseline"] > 0.95 and opened["figures"]["delivery_rate"] < 0.5
    assert counted == 1


def test_alerts_match_the_asyncapi_document() -> None:
    """docs/asyncapi.yaml names sms.alerts and sms.alert.<type>, and an alert validates against its schema."""
    channel = CHANNELS["alerts"]
    assert channel["bindings"]["amqp"]["exchange"]["name"] == topology.ALERTS_EXCHANGE
    assert channel["address"] == topology.ALERT_KEY_PREFIX + "{type}" == ALERT_KEY_PREFIX + "{type}"
    assert channel["parameters"]["type"]["enum"] == [t.value for t in AlertType]
    alert = Alert(
        type=AlertType.DELIVERY_DROP, provider="a", country="GB", figures={"delivery_rate": 0.4}
    )
    assert alert.routing_key == channel["address"].format(type="delivery_drop")
    _validator("/components/schemas/Alert").validate(json.loads(alert.model_dump_json()))


def test_a_spend_cap_alert_names_its_cap() -> None:
    """spend_cap_alert (for the limits code) names the provider and the figures; it is sms.alert.spend_cap."""
    alert = spend_cap_alert("provider", "twilio", "2026-12-01", limit=300.0, spent=300.5)
    assert (alert.provider, alert.country, alert.routing_key) == (
        "twilio",
        None,
        "sms.alert.spend_cap",
    )
    assert alert.figures["limit"] == 300.0 and alert.action == "routed_away"
