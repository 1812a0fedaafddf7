"""Wiring: settings → store, providers, router, dispatcher, worker; and running it.

Kept apart from the CLI so tests, the demo and benchmarks build the same worker.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version

from smsrelay import providers as registry
from smsrelay import telemetry
from smsrelay.amqp import AmqpAlerts, AmqpEvents, EventsConnection, Worker
from smsrelay.dispatch import Dispatcher
from smsrelay.economics.prices import PriceTable, StalePrices
from smsrelay.guard import Guard, build_guard
from smsrelay.health import HealthMonitor
from smsrelay.health.alert_watch import AlertWatch
from smsrelay.health.alerts import AlertQueue, spend_cap_alert
from smsrelay.health.receipt_feed import ReceiptFeed
from smsrelay.health.report_metrics import DeliveryGauges, GaugeRefresher
from smsrelay.health.view import MonitorView
from smsrelay.limits.build import build_limit_gate
from smsrelay.limits.caps import Cap
from smsrelay.limits.gate import LimitGate
from smsrelay.limits.metrics import LimitMetrics
from smsrelay.logging import get_logger
from smsrelay.metrics import Metrics
from smsrelay.models import StatusEvent
from smsrelay.ops_http import OpsServer
from smsrelay.otp.geo import GeoRules
from smsrelay.otp.resend_deadline import DeadlineChecker, ResendMetrics
from smsrelay.providers import Provider
from smsrelay.queue_stats import QueueStats, watched_queues
from smsrelay.receipt_intake import StoreReceiptSink
from smsrelay.receipts import EventSink
from smsrelay.resend_amqp import ResendDeadlines
from smsrelay.routing import HealthView, LimitsView, Router, route_coverage_warnings
from smsrelay.routing.configured import configured_router
from smsrelay.routing.table import RouteTable
from smsrelay.settings import Settings
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.batch import BatchingStore
from smsrelay.store.health import HealthReads
from smsrelay.store.prices import PriceStore
from smsrelay.store.receipts import ReceiptStore
from smsrelay.store.resends import SqlResends
from smsrelay.urls import mask_url
from smsrelay.verify_amqp import VerifyServer

log = get_logger(__name__)


@dataclass
class Runtime:
    """The running pieces of one worker process."""

    settings: Settings
    store: SqlStore
    providers: dict[str, Provider]
    metrics: Metrics = field(default_factory=Metrics)
    worker: Worker | None = None
    verify_server: VerifyServer | None = None
    resend_deadlines: ResendDeadlines | None = None
    hot_store: BatchingStore | None = None
    receipt_events: _LazyEvents | None = None
    queue_stats: QueueStats | None = None
    ops: OpsServer | None = None
    stopping: bool = False
    # The prices in effect at start (config and imported tables); see load_prices.
    prices: PriceTable = field(default_factory=lambda: PriceTable([]))
    # Delivery health and limits as the planner reads them; None: neutral defaults.
    health: HealthView | None = None
    limits: LimitsView | None = None
    # The worker's delivery windows and breakers (``health`` reads them), and what feeds
    # them every process's receipts from the store; None outside a worker.
    monitor: HealthMonitor | None = None
    receipt_feed: ReceiptFeed | None = None
    # Rate limits and spend caps around each attempt (also ``limits`` above).
    limit_gate: LimitGate | None = None
    limit_metrics: LimitMetrics | None = None
    report_gauges: GaugeRefresher | None = None
    # Where alerts go (sms.alerts, a metric, a log line): an AlertSink other code may
    # fire through (spend caps), and what watches health for them.
    alerts: AlertQueue | None = None
    alert_watch: AlertWatch | None = None
    # The pumping guard (None: guard.mode off); built once, shared by the dispatchers
    # and the AMQP verification server (whose approvals are its conversions).
    guard: Guard | None = None
    _guard_built: bool = False

    @classmethod
    async def build(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        """Open the store (migrating it when asked) and build the configured providers."""
        store = SqlStore.from_url(settings.database_url)
        if migrate:
            await upgrade(store.engine)
        built = {name: registry.build(name, s) for name, s in settings.provider_settings().items()}
        return cls(settings=settings, store=store, providers=built)

    async def load_prices(self) -> PriceTable:
        """Store the config's prices (with history), then read every table back.

        Stale prices are warned about and counted (``smsrelay_stale_prices``).
        """
        prices = PriceStore(self.store.engine)
        configured = self.settings.prices.table()
        if configured:
            await prices.save(configured, "config")
        history = await prices.history()
        StalePrices(self.metrics.registry).update(history, self.settings.prices.max_age)
        self.prices = PriceTable(history)
        return self.prices

    def start_limits(self) -> LimitGate:
        """Rate limits and spend caps, shared through ``redis_url`` when set (once)."""
        if self.limit_gate is None:
            self.limit_metrics = LimitMetrics(self.metrics.registry)
            rates = {name: p.rate_limit for name, p in self.settings.provider_settings().items()}
            self.limit_gate = build_limit_gate(
                self.settings.redis_url,
                rates,
                self.settings.spend_caps,
                self.settings.limits,
                self.limit_metrics,
            )
            self.limits = self.limit_gate
        return self.limit_gate

    def router(self) -> Router:
        """The planner over the configured routes, the loaded prices, health and limits."""
        return configured_router(self.settings, self.prices, self.health, self.limits)

    def dispatcher(self, events: AmqpEvents) -> Dispatcher:
        """A dispatcher over this runtime's store and providers."""
        # The dispatcher's writes share transactions (group commit); see store/batch.py.
        self.hot_store = self.hot_store or BatchingStore(self.store)
        gate = self.start_limits()
        return Dispatcher(
            store=self.hot_store,
            providers=self.providers,
            router=self.router(),
            events=events,
            retry=self.settings.retry,
            metrics=self.metrics,
            digest_key=self.settings.request_digest_key(),
            geo=GeoRules(self.settings.geo),
            health=self.monitor,
            limits=gate if gate.active else None,
            guard=self.pumping_guard(),
        )

    def resend_checker(self, events: EventSink) -> DeadlineChecker:
        """Checks receipt deadlines over this runtime's store, providers, planner, breakers
        and limits (the dispatcher's own)."""
        gate = self.start_limits()
        return DeadlineChecker(
            store=SqlResends(self.store),
            providers=self.providers,
            router=self.router(),
            events=events,
            max_resends=self.settings.resend.max_resends,
            metrics=ResendMetrics(self.metrics.registry),
            digest_key=self.settings.request_digest_key(),
            health=self.monitor,
            limits=gate if gate.active else None,
        )

    async def start_health(self) -> HealthMonitor:
        """This worker's ``HealthMonitor``: fed by its own sends (the dispatcher) and, read
        from the store, by the receipts every process applies; the planner reads it."""
        if self.monitor is None:
            settings = self.settings.health
            self.monitor = HealthMonitor(settings, registry=self.metrics.registry)
            self.health = MonitorView(self.monitor)
            self.alert_watch = AlertWatch(
                self.monitor, self.start_alerts(), settings.alerts, self._route_providers
            )
            self.receipt_feed = ReceiptFeed(
                HealthReads(self.store),
                self.monitor,
                settings.receipt_poll_interval,
                settings.receipt_deadline,
                on_polled=self.alert_watch.check,
            )
            await self.receipt_feed.poll()  # the cursor: receipts from now on
            self.receipt_feed.start()
            gauges = DeliveryGauges(self.metrics.registry, settings.metrics_max_keys)
            self.report_gauges = GaugeRefresher(
                HealthReads(self.store), gauges, settings.report_interval
            )
            self.report_gauges.start()
        return self.monitor

    def start_alerts(self) -> AlertQueue:
        """This process's ``AlertSink``: de-duplicated, logged, counted, published to
        ``sms.alerts`` (unless ``health.alerts.publish`` is off)."""
        if self.alerts is None:
            settings = self.settings.health.alerts
            transport = AmqpAlerts(self.settings.amqp_url) if settings.publish else None
            self.alerts = AlertQueue(
                transport, cool_down=settings.cool_down, registry=self.metrics.registry
            )
            self.alerts.start()
        return self.alerts

    def _cap_alert(self, cap: Cap, spent: Decimal | None) -> None:
        # A spend cap reached for the first time this period: sms.alerts, a metric, a line.
        if self.alerts is None:
            return
        currency = self.settings.spend_caps.currency
        self.alerts.publish(
            spend_cap_alert(
                cap.scope,
                cap.name,
                cap.period,
                limit=cap.limit / 1_000_000,
                spent=float(spent) if spent is not None else None,
                currency=currency,
            )
        )

    def _route_providers(self, provider: str, country: str) -> list[str]:
        # The country's route (or "*"): where an alert says the traffic can go.
        return RouteTable(self.settings.routes).match("", country).route.providers

    def use_guard(self, guard: Guard | None) -> None:
        """Use ``guard`` instead of building one from settings (before the worker starts)."""
        self.guard = guard
        self._guard_built = True

    def pumping_guard(self) -> Guard | None:
        """The guard of ``guard.mode``, built at the first call."""
        if not self._guard_built:
            s = self.settings
            self.guard = build_guard(s.guard, s.redis_url, s.limits, self.metrics.registry)
            self._guard_built = True
        return self.guard

    async def start_providers(self) -> None:
        """Open providers' long-lived links (SMPP binds), with a path for their receipts."""
        self.receipt_events = self.receipt_events or _LazyEvents(self.settings.amqp_url)
        receipts = ReceiptStore(self.store, metrics=self.metrics)
        sink = StoreReceiptSink(receipts, self.receipt_events, self.metrics)
        for provider in self.providers.values():
            await provider.start(sink)

    async def start_worker(self) -> Worker:
        """Load prices and open the providers' links, then start consuming ``sms.send``
        and the OTP lane ``sms.otp``."""
        await self.load_prices()
        await self.start_health()
        self.start_limits()
        if self.limit_metrics is not None:
            self.limit_metrics.on_cap_reached = self._cap_alert
        await self.start_providers()
        # Before the worker, which parks deadlines through it from its first send.
        self.resend_deadlines = ResendDeadlines(self.settings.amqp_url, self.resend_checker)
        await self.resend_deadlines.start()
        self.worker = Worker(
            url=self.settings.amqp_url,
            prefetch=self.settings.prefetch,
            otp_prefetch=self.settings.otp_prefetch,
            retry=self.settings.retry,
            make_dispatcher=self.dispatcher,
            deadlines=self.resend_deadlines,
        )
        await self.worker.start()
        self.verify_server = VerifyServer(
            self.settings.amqp_url, self.store, self.settings, guard=self.pumping_guard()
        )
        await self.verify_server.start()
        for warning in route_coverage_warnings(self.settings.routes):
            log.warning("route_coverage", problem=warning)
        return self.worker

    def start_queue_stats(self) -> QueueStats:
        """Read the queues' depth and consumers from the broker every ``queue_poll_interval``."""
        self.queue_stats = QueueStats(
            self.settings.amqp_url,
            watched_queues(self.settings.retry.tiers),
            self.metrics,
            self.settings.queue_poll_interval,
        )
        self.queue_stats.start()
        self.metrics.in_flight.set_function(lambda: self.worker.in_flight if self.worker else 0)
        self.metrics.consuming.set_function(lambda: 1 if self.consuming else 0)
        return self.queue_stats

    async def serve_ops(self, port: int | None = None) -> OpsServer:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics_host:metrics_port``."""
        self.ops = OpsServer(self.metrics, self.worker_checks)
        await self.ops.start(self.settings.metrics_host, port or self.settings.metrics_port)
        log.info("ops_listening", host=self.settings.metrics_host, port=self.ops.port)
        return self.ops

    @property
    def consuming(self) -> bool:
        """True while the worker is started, not stopping, and its connection is up."""
        connection = self.worker.connection if self.worker else None
        return (
            not self.stopping
            and connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
        )

    async def worker_checks(self) -> Mapping[str, bool]:
        """What the worker's ``/readyz`` reports: consuming ``sms.send``, the store answering."""
        return {"consuming": self.consuming, "store": await self._store_ok()}

    async def _store_ok(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                await self.store.ping()
        except Exception as exc:  # any driver error means "not ready"; the log says which
            log.warning("store_unready", error=type(exc).__name__)
            return False
        return True

    async def purge_expired_records(self) -> int:
        """Apply the retention setting once."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        return await self.store.purge(cutoff)

    async def close(self) -> None:
        """Drain the worker, then release providers and the store."""
        self.stopping = True
        if self.verify_server is not None:
            await self.verify_server.stop()
        if self.worker is not None:
            await self.worker.stop(self.settings.grace_period)
        if self.resend_deadlines is not None:
            await self.resend_deadlines.stop(self.settings.grace_period)
        if self.queue_stats is not None:
            await self.queue_stats.close()
        if self.receipt_feed is not None:
            await self.receipt_feed.close()
        if self.report_gauges is not None:
            await self.report_gauges.close()
        if self.alerts is not None:
            await self.alerts.close()
        if self.ops is not None:
            await self.ops.close()
        for provider in self.providers.values():
            await provider.close()
        if self.limit_gate is not None:
            await self.limit_gate.close()
        if self.guard is not None:
            await self.guard.close()
        if self.receipt_events is not None:
            await self.receipt_events.close()
        await (self.hot_store or self.store).close()


class _LazyEvents:
    """Publishes receipts' status events on a connection opened at the first one.

    Only providers with their own links (SMPP) produce receipts in the worker; a worker
    without them never opens it.
    """

    def __init__(self, url: str) -> None:
        self.connection = EventsConnection(url)
        self._opening = asyncio.Lock()
        self._open = False

    async def publish(self, event: StatusEvent) -> None:
        async with self._opening:
            if not self._open:
                await self.connection.open()
                self._open = True
        await self.connection.publish(event)

    async def close(self) -> None:
        await self.connection.close()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until SIGTERM/SIGINT (or ``stop``), then shut down gracefully."""
    telemetry.setup("smsrelay-worker")  # off unless OTEL_* asks for traces
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log_startup(settings, "worker")
    runtime = await Runtime.build(settings)
    try:
        await runtime.start_worker()
        runtime.start_queue_stats()
        if settings.metrics_port:
            await runtime.serve_ops()
        purged = await runtime.purge_expired_records()
        log.info("retention_purge", purged=purged, days=settings.retention_days)
        await _until_stopped(runtime, stop)
    finally:
        await runtime.close()


async def _until_stopped(runtime: Runtime, stop: asyncio.Event) -> None:
    # Retention runs daily inside the worker so a laptop install needs no cron.
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=86400)
        except TimeoutError:
            await runtime.purge_expired_records()


def log_startup(settings: Settings, role: str) -> None:
    """One line that says what this process runs with (credentials masked)."""
    log.info(
        "smsrelay_starting",
        role=role,
        version=version("smsrelay"),
        providers={name: p.type for name, p in settings.provider_settings().items()},
        routes=dict(settings.routes) if len(settings.routes) <= 20 else len(settings.routes),
        store=mask_url(settings.database_url),
        broker=mask_url(settings.amqp_url),
        metrics_port=settings.metrics_port or None,
    )
