"""Run a scenario: a real worker (its own vhost, its own store) against simulated providers.

The worker is smsrelay's own (``Runtime``: the AMQP consumer, the dispatcher, the planner,
the store), in this process so that the runner can play the scenario's events into the
simulator providers at their time. Traffic is published through ``AsyncClient`` as a
producer would. Receipts come back through the worker's receipt sink.

Time compression: every scenario time (traffic, events, receipt delays, Retry-After,
health windows and breaker timings, retry delays) is divided by ``time_scale``; traffic
rates are multiplied by it. Reports convert back to simulated seconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from smsrelay import brokers, topology, urls
from smsrelay import settings as config
from smsrelay.client import AsyncClient
from smsrelay.demo import send_queue_consumers
from smsrelay.errors import ConfigError
from smsrelay.guard.guard import GuardMetrics
from smsrelay.models import Kind, SendRequest
from smsrelay.providers.simulator import Behaviour, SimulatorProvider
from smsrelay.runtime import Runtime
from smsrelay.simulate.guarded import RecordingGuard, Screened
from smsrelay.simulate.market import Period, timeline
from smsrelay.simulate.report import Captured, build_report
from smsrelay.simulate.scenario import Scenario, parse_scenario
from smsrelay.simulate.traffic import Arrival, schedule
from smsrelay.store import SqlStore
from smsrelay.store.runs import RunStore
from smsrelay.store.verifications import VerificationStore

# The worker's delayed retries, in simulated seconds (scaled like everything else).
RETRY_DELAYS = (5.0, 30.0, 120.0)
# Wall seconds allowed, after the last message, for the worker and the receipts to settle.
SETTLE_SECONDS = 120.0
# Publishes awaiting their confirm at once.
PUBLISHING = 200
_OTP_BODY = "Your example.com code is 482913. It expires in 10 minutes."
# Wall seconds between the runner's looks for newly delivered OTPs to report as used.
CONVERSION_POLL = 1.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    """The report, and the vhost and database the run used."""

    report: dict[str, Any]
    amqp_url: str
    database_url: str


def scaled_behaviour(behaviour: Behaviour, factor: float) -> Behaviour:
    """``behaviour`` with its durations divided by ``factor`` (wall time)."""
    retry_after = behaviour.retry_after / factor if behaviour.retry_after is not None else None
    return behaviour.model_copy(
        update={"receipt_delay": behaviour.receipt_delay.scaled(factor), "retry_after": retry_after}
    )


def worker_settings(scenario: Scenario, amqp_url: str, database_url: str) -> config.Settings:
    """The worker's settings: one simulator per provider, prices, the route, scaled health."""
    scale = scenario.time_scale
    providers = {
        name: {
            "type": "simulator",
            "latency_ms": spec.latency_ms,
            "seed": scenario.seed * 1000 + n,
            "currency": scenario.currency,
            "market": {
                country: scaled_behaviour(offer, scale).model_dump(mode="json")
                for country, offer in spec.countries.items()
            },
        }
        for n, (name, spec) in enumerate(scenario.providers.items())
    }
    prices = {
        name: {
            "currency": scenario.currency,
            "destinations": {c: str(o.price) for c, o in spec.countries.items()},
        }
        for name, spec in scenario.providers.items()
    }
    route = scenario.route.model_dump(exclude_none=True)
    route["providers"] = scenario.route_providers
    return config.load(
        amqp_url=amqp_url,
        database_url=database_url,
        providers=providers,
        prices={"providers": prices},
        routes={"*": route},
        health=scenario.health_settings().model_dump(),
        guard=scenario.guard_settings().model_dump(mode="json"),
        # The guard's state is the run's own (in process): nothing shared with Redis.
        redis_url=None,
        retry={"max_attempts": 5, "delays": [d / scale for d in RETRY_DELAYS]},
        log_level="warning",
    )


async def run_scenario(
    scenario: Scenario,
    *,
    amqp_url: str,
    database_url: str,
    progress: Progress = lambda _: None,
    guard_mode: str | None = None,
) -> RunResult:
    """Run ``scenario`` to the end and build its report from the store.

    ``guard_mode`` overrides the scenario's ``guard.mode`` (the same attack, monitored).
    """
    if guard_mode is not None:
        # Validated again: the attack needs a guard that is not off.
        scenario = parse_scenario(
            {**scenario.model_dump(mode="json"), "guard": {**scenario.guard, "mode": guard_mode}}
        )
    async with own_vhost(amqp_url) as url:
        settings = worker_settings(scenario, url, database_url)
        periods = timeline(scenario)
        runtime = await Runtime.build(settings)
        guard = None
        if settings.guard.mode != "off":
            guard = RecordingGuard(settings.guard, GuardMetrics(runtime.metrics.registry))
            runtime.use_guard(guard)
        prefix = f"sim-{uuid.uuid4().hex[:8]}-"
        alerts = AlertTap(url)
        try:
            await alerts.start()
            await runtime.start_worker()
            simulators = _simulators(runtime)
            arrivals = schedule(scenario)
            progress(
                f"{len(arrivals)} messages over {scenario.duration:g} simulated s "
                f"({scenario.duration / scenario.time_scale:.0f} s of wall time)"
            )
            # One origin for traffic, events and the report's clock.
            t0, start = asyncio.get_running_loop().time(), datetime.now(UTC)
            events = asyncio.create_task(_play_events(scenario, periods, simulators, progress, t0))
            users = _Users(scenario, arrivals, prefix, runtime, guard)
            converting = asyncio.create_task(users.run())
            try:
                await _publish(scenario, arrivals, url, prefix, t0)
                progress(f"published in {_since(t0):.1f} s of wall time")
                await events
                await _settle(runtime.store, prefix, len(arrivals), simulators)
                progress(f"settled after {_since(t0):.1f} s of wall time")
            finally:
                events.cancel()
                converting.cancel()
            failed = (
                converting.exception() if converting.done() and not converting.cancelled() else None
            )
            if failed is not None:
                # The guard learnt less than the scenario says: the figures would mislead.
                raise failed
        finally:
            closing = asyncio.get_running_loop().time()
            await alerts.close()
            await runtime.close()
            progress(f"worker stopped in {_since(closing):.1f} s")
        captured = [
            Captured((wall - t0) * scenario.time_scale, body) for wall, body in alerts.received
        ]
        screened = guard.screened if guard is not None else []
        report = await _report(
            scenario, periods, database_url, prefix, start, captured, screened, arrivals
        )
        report["conversions_reported"] = users.reported
    return RunResult(report, url, database_url)


class AlertTap:
    """A queue of the run's own bound to ``sms.alerts`` (every type): what a subscriber
    would get, with the wall time each alert arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        """Declare the exchange, bind an exclusive queue and consume it."""
        self._connection = await brokers.connect(self.url)
        channel = await self._connection.channel()
        exchange = await topology.declare_alerts_exchange(channel)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=f"{topology.ALERT_KEY_PREFIX}#")
        await queue.consume(self._on_alert)

    async def _on_alert(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                body = json.loads(message.body)
            except ValueError:
                return  # not ours to judge: the run's report lists alerts it can read
            if isinstance(body, dict):
                self.received.append((asyncio.get_running_loop().time(), body))

    async def close(self) -> None:
        """Close the connection (the queue goes with it)."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class _Users:
    """The people who got the codes: a share of delivered OTPs is used, and each use is
    reported as the feedback endpoint does (a conversions row, then the guard)."""

    def __init__(
        self,
        scenario: Scenario,
        arrivals: list[Arrival],
        prefix: str,
        runtime: Runtime,
        guard: RecordingGuard | None,
    ) -> None:
        self.prefix = prefix
        self.runtime = runtime
        self.guard = guard
        self.seed = scenario.seed
        self.reported = 0
        self.rates: dict[str, float] = {}
        attack = scenario.attack
        for n, arrival in enumerate(arrivals):
            if arrival.pumped is not None and attack is not None:
                self.rates[f"{prefix}{n:06d}"] = attack.conversion
            else:
                rate = scenario.traffic[arrival.country].conversion
                if rate is not None:
                    self.rates[f"{prefix}{n:06d}"] = rate
        self._seen: set[str] = set()

    async def run(self) -> None:
        """Until cancelled: report the newly delivered codes that are used."""
        if not self.rates:
            return
        runs = RunStore(self.runtime.store)
        conversions = VerificationStore(self.runtime.store)
        while True:
            await asyncio.sleep(CONVERSION_POLL)
            for message in await runs.messages(self.prefix):
                if message.state != "delivered" or message.id in self._seen:
                    continue
                self._seen.add(message.id)
                rate = self.rates.get(message.id)
                if rate is None or random.Random(f"{self.seed}:{message.id}").random() >= rate:
                    continue
                await conversions.record_conversion(message.id, "simulate", datetime.now(UTC))
                if self.guard is not None:
                    await self.guard.converted(message.id)
                self.reported += 1


def _since(t0: float) -> float:
    return asyncio.get_running_loop().time() - t0


def _simulators(runtime: Runtime) -> dict[str, SimulatorProvider]:
    out = {}
    for name, provider in runtime.providers.items():
        if not isinstance(provider, SimulatorProvider):  # pragma: no cover - built above
            raise ConfigError(f"providers.{name}", "a simulation runs simulator providers only")
        out[name] = provider
    return out


async def _publish(
    scenario: Scenario, arrivals: list[Arrival], url: str, prefix: str, t0: float
) -> None:
    # Each message leaves at its time; confirms are awaited concurrently (up to
    # PUBLISHING at once) so a slow confirm never holds back the schedule.
    loop = asyncio.get_running_loop()
    room = asyncio.Semaphore(PUBLISHING)
    pending: set[asyncio.Task[None]] = set()

    async def one(client: AsyncClient, request: SendRequest) -> None:
        try:
            await client.publish(request)
        finally:
            room.release()

    async with AsyncClient(url) as client:
        for n, arrival in enumerate(arrivals):
            wait = t0 + arrival.t / scenario.time_scale - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if arrival.pumped is not None:
                # Pumping asks for codes like a login form would: an OTP of the same body.
                request = SendRequest(
                    id=f"{prefix}{n:06d}", to=arrival.to, body=_OTP_BODY, kind=Kind.OTP
                )
            else:
                traffic = scenario.traffic[arrival.country]
                request = SendRequest(
                    id=f"{prefix}{n:06d}", to=arrival.to, body=traffic.body, kind=traffic.kind
                )
            await room.acquire()
            task = asyncio.create_task(one(client, request))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)


async def _play_events(
    scenario: Scenario,
    periods: list[Period],
    simulators: dict[str, SimulatorProvider],
    progress: Progress,
    t0: float,
) -> None:
    loop = asyncio.get_running_loop()
    for event in scenario.events:
        wait = t0 + event.at / scenario.time_scale - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        period = next(p for p in periods if p.start <= event.at < p.end)
        truth = period.offers[event.provider][event.country]
        simulators[event.provider].change(
            event.country, scaled_behaviour(truth, scenario.time_scale).model_dump()
        )
        progress(f"t={event.at:g} s: {event.title}")


async def _settle(
    store: SqlStore, prefix: str, expected: int, simulators: dict[str, SimulatorProvider]
) -> None:
    """Wait until every message has left ``accepted`` and every receipt is applied."""
    runs = RunStore(store)
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        rows = await runs.messages(prefix)
        final = sum(m.state != "accepted" for m in rows)
        pending = sum(s.pending_receipts for s in simulators.values())
        if final >= expected and pending == 0:
            return
        await asyncio.sleep(0.2)


async def _report(
    scenario: Scenario,
    periods: list[Period],
    database_url: str,
    prefix: str,
    start: datetime,
    alerts: list[Captured],
    screened: list[Screened],
    arrivals: list[Arrival],
) -> dict[str, Any]:
    store = SqlStore.from_url(database_url)
    try:
        runs = RunStore(store)
        messages, attempts = await runs.messages(prefix), await runs.attempts(prefix)
    finally:
        await store.close()
    pumped = {f"{prefix}{n:06d}": a.pumped for n, a in enumerate(arrivals) if a.pumped is not None}
    return build_report(
        scenario,
        periods,
        messages,
        attempts,
        start,
        alerts=alerts,
        screened=screened,
        pumped=pumped,
    )


class own_vhost:  # noqa: N801 - used as a context manager, read as a phrase
    """A fresh vhost on ``url``'s broker for the run, deleted after (rabbitmqctl).

    Without rabbitmqctl, a URL that names its own vhost is used as given, provided
    nothing else consumes its ``sms.send`` (the run's messages must meet its worker only).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.name: str | None = None

    async def __aenter__(self) -> str:
        if shutil.which("rabbitmqctl") is None:
            if urls.vhost(self.url) == "/":
                raise ConfigError(
                    "amqp_url",
                    "simulate runs in a vhost of its own: install rabbitmqctl, or name an "
                    "empty vhost in amqp_url (SMSRELAY_AMQP_URL=amqp://…/sim)",
                )
            if await send_queue_consumers(self.url):
                raise ConfigError("amqp_url", "another consumer is on sms.send in that vhost")
            return self.url
        self.name = f"smsrelay-sim-{uuid.uuid4().hex[:10]}"
        await asyncio.to_thread(_rabbitmqctl, "add_vhost", self.name)
        await asyncio.to_thread(
            _rabbitmqctl, "set_permissions", "-p", self.name, urls.user(self.url), ".*", ".*", ".*"
        )
        return urls.with_vhost(self.url, self.name)

    async def __aexit__(self, *_: object) -> None:
        if self.name is not None:
            await asyncio.to_thread(_rabbitmqctl, "delete_vhost", self.name)


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            "amqp_url", f"rabbitmqctl {args[0]}: {detail[-1] if detail else 'failed'}"
        )


def default_database(out_dir: Path) -> str:
    """A fresh SQLite file in ``out_dir`` (an old one from a previous run is removed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "simulation.db"
    path.unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"
