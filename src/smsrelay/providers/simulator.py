"""A provider that sends nothing: latency, failures, receipts and a record, for demos, tests,
load and market simulations.

It behaves like a real provider from the worker's point of view: it can be slow,
fail transiently at a configured rate, reject configured numbers permanently, and it
records what it "sent" (in memory, and as JSON lines when ``record_path`` is set, so
another process can count deliveries).

With a ``market`` (destination country, or ``*``, → ``Behaviour``) it also plays one
provider of a simulated market (``smsrelay simulate``): per country a delivery
probability, a receipt delay, a price it reports as the charge, and faults. ``change``
alters a country's behaviour while running. Its receipts go through the worker's
``ReceiptSink`` (``Provider.start``), the path SMPP receipts take, so the store, events
and delivery health see them as they would a real provider's.

=====================  ==================  ================================================
Behaviour              code                raised / sent
=====================  ==================  ================================================
``throttle_rate``      ``SIM-THROTTLED``   ``RateLimited`` (a 429), ``retry_after`` seconds
``failure_rate``       ``SIM-OUTAGE``      ``TransientProviderError`` (a 5xx, an outage)
``delivery_rate``      ``DELIVRD``         a ``delivered`` receipt, else ``UNDELIV``
``receipts: none``     (none)              accepted, and no receipt ever comes
=====================  ==================  ================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smsrelay import segments
from smsrelay.errors import (
    RateLimited,
    RecipientRejected,
    StaleReceipt,
    TransientProviderError,
)
from smsrelay.logging import get_logger
from smsrelay.models import Receipt, ReceiptStatus, SendRequest, SendResult
from smsrelay.providers.base import Provider, ProviderSettings, ReceiptSink

log = get_logger(__name__)

# Receipts handed to the sink in one transaction: those that came due together.
RECEIPT_BATCH = 200
RECEIPT_LINGER = 0.05


class ReceiptDelay(BaseModel):
    """Seconds from an accepted send to its receipt.

    ``fixed``: always ``median``; ``exponential``: memoryless with that median;
    ``lognormal``: median ``median`` and 95th percentile ``p95`` (a long tail, as real
    handsets and carriers give).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: Literal["fixed", "exponential", "lognormal"] = "lognormal"
    median: float = Field(default=2.0, ge=0, le=86400)
    p95: float | None = Field(default=None, ge=0, le=86400)

    @model_validator(mode="after")
    def _check(self) -> ReceiptDelay:
        if self.p95 is not None and self.p95 < self.median:
            raise ValueError("p95 must not be below median")
        return self

    def sample(self, rng: random.Random) -> float:
        """One delay drawn with ``rng``."""
        if self.distribution == "fixed" or self.median == 0:
            return self.median
        if self.distribution == "exponential":
            return rng.expovariate(math.log(2) / self.median)
        p95 = self.p95 if self.p95 is not None else self.median * 4
        sigma = math.log(p95 / self.median) / 1.6449 if p95 > self.median else 0.0
        return rng.lognormvariate(math.log(self.median), sigma)

    def scaled(self, factor: float) -> ReceiptDelay:
        """The same distribution with every time divided by ``factor``."""
        p95 = self.p95 / factor if self.p95 is not None else None
        return self.model_copy(update={"median": self.median / factor, "p95": p95})


class Behaviour(BaseModel):
    """How the simulated provider treats messages to one destination country."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Share of accepted messages that reach the handset (their receipt says delivered).
    delivery_rate: float = Field(default=1.0, ge=0, le=1)
    # `none`: a silent failure that sends no receipt at all.
    receipts: Literal["all", "none"] = "all"
    receipt_delay: ReceiptDelay = ReceiptDelay()
    # Share of sends answered with a transient error (1.0: an outage).
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    # Share of sends answered "slow down" (a 429), with this Retry-After.
    throttle_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after: float | None = Field(default=1.0, ge=0, le=3600)
    # What one part costs; reported as the charge in the send's answer.
    price: Decimal | None = Field(default=None, ge=0, max_digits=20)


class SimulatorSettings(ProviderSettings):
    """``latency_ms``, ``failure_rate`` (0..1, transient), failing numbers, ``record_path``;
    ``market`` (country or ``*`` → ``Behaviour``) and ``currency`` for a simulated market."""

    type: Literal["simulator"] = "simulator"
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    permanent_failure_numbers: list[str] = []
    transient_failure_numbers: list[str] = []
    record_path: str | None = None
    seed: int | None = None
    # Take the message as the request arrives and answer latency_ms later, as a real
    # provider does: a worker that dies while waiting may leave it sent.
    accept_on_arrival: bool = False
    market: dict[str, Behaviour] = Field(default_factory=dict, max_length=300)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _check_market(self) -> SimulatorSettings:
        for key in self.market:
            if key != "*" and not (len(key) == 2 and key.isascii() and key.isupper()):
                raise ValueError(f"market keys are countries (GB) or *, not {key[:8]!r}")
        return self


class SimulatorProvider(Provider):
    """The ``simulator`` provider."""

    type_name: ClassVar[str] = "simulator"
    settings_class: ClassVar[type[ProviderSettings]] = SimulatorSettings

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, SimulatorSettings)
        self.config = settings
        self.sent: list[SendRequest] = []
        # Sends inside send() right now, and the most there ever were at once.
        self.in_flight = 0
        self.peak_in_flight = 0
        self._random = random.Random(settings.seed)
        self._record = Path(settings.record_path) if settings.record_path else None
        self.market: dict[str, Behaviour] = dict(settings.market)
        self._sink: ReceiptSink | None = None
        self._due: asyncio.Queue[Receipt] = asyncio.Queue()
        self._timers: set[asyncio.TimerHandle] = set()
        self._applier: asyncio.Task[None] | None = None
        self._outstanding = 0

    # -- the market ------------------------------------------------------------------------

    def behaviour(self, country: str) -> Behaviour | None:
        """The behaviour for ``country`` (else ``*``); None outside any market."""
        return self.market.get(country) or self.market.get("*")

    def change(self, country: str, changes: Mapping[str, Any]) -> Behaviour:
        """Alter ``country``'s behaviour now (an outage, a collapse); ``ValueError`` if invalid."""
        current = self.behaviour(country) or Behaviour()
        try:
            changed = Behaviour.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise ValueError(f"{self.name} {country}: {exc.errors()[0]['msg']}") from None
        self.market[country] = changed
        return changed

    @property
    def pending_receipts(self) -> int:
        """Receipts scheduled and not yet handed to the sink."""
        return self._outstanding

    # -- life ------------------------------------------------------------------------------

    async def start(self, receipts: ReceiptSink) -> None:
        """Keep the worker's receipt sink; receipts are applied in batches from now on."""
        self._sink = receipts
        if self._applier is None:
            self._applier = asyncio.create_task(self._apply_batches(receipts))

    async def close(self) -> None:
        """Drop receipts not yet due; apply those due."""
        for timer in self._timers:
            timer.cancel()
        self._outstanding -= len(self._timers)
        self._timers.clear()
        if self._applier is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.join(), self.config.timeout)
            self._applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._applier
            self._applier = None

    # -- sending ---------------------------------------------------------------------------

    async def send(self, request: SendRequest) -> SendResult:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.config.accept_on_arrival:
                result = self._decide(request)
                await self._wait()
                return result
            await self._wait()
            return self._decide(request)
        finally:
            self.in_flight -= 1

    async def _wait(self) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    def _decide(self, request: SendRequest) -> SendResult:
        if request.to in self.config.permanent_failure_numbers:
            raise RecipientRejected(self.name, "SIM-INVALID", "number rejected by simulator")
        if request.to in self.config.transient_failure_numbers or (
            self.config.failure_rate and self._random.random() < self.config.failure_rate
        ):
            raise TransientProviderError(self.name, "SIM-UNAVAILABLE", "simulated outage")
        behaviour = self.behaviour(request.country)
        if behaviour is not None:
            self._faults(behaviour)
        parts = segments.count(request.body)
        cost = behaviour.price * parts if behaviour and behaviour.price is not None else None
        result = SendResult(
            provider_message_id=f"sim-{uuid.uuid4().hex}",
            segments=parts,
            cost=cost,
            currency=self.config.currency if cost is not None else None,
        )
        self.sent.append(request)
        if self._record is not None:
            self._append(request, result)
        if behaviour is not None and behaviour.receipts == "all":
            self._schedule_receipt(request, result, behaviour)
        return result

    def _faults(self, behaviour: Behaviour) -> None:
        if behaviour.throttle_rate and self._random.random() < behaviour.throttle_rate:
            raise RateLimited(
                self.name, "SIM-THROTTLED", "simulated throttling", behaviour.retry_after
            )
        if behaviour.failure_rate and self._random.random() < behaviour.failure_rate:
            raise TransientProviderError(self.name, "SIM-OUTAGE", "simulated outage")

    def _append(self, request: SendRequest, result: SendResult) -> None:
        # One short line per send, flushed at once so a SIGKILL loses no record of a send.
        # "at": when it was taken (wall clock), so a test can measure a rate at the provider.
        line = json.dumps(
            {
                "id": request.id,
                "provider": self.name,
                "pmid": result.provider_message_id,
                "at": time.time(),
            }
        )
        with self._record.open("a") as fh:  # type: ignore[union-attr]
            fh.write(line + "\n")

    # -- receipts --------------------------------------------------------------------------

    def _schedule_receipt(
        self, request: SendRequest, result: SendResult, behaviour: Behaviour
    ) -> None:
        if self._sink is None:
            return  # not started by a worker (a unit test): nobody takes receipts
        delivered = self._random.random() < behaviour.delivery_rate
        receipt = Receipt(
            provider_message_id=result.provider_message_id,
            message_id=request.id,
            status=ReceiptStatus.DELIVERED if delivered else ReceiptStatus.UNDELIVERED,
            provider_status="DELIVRD" if delivered else "UNDELIV",
            error_code=None if delivered else "SIM-UNDELIVERED",
        )
        delay = behaviour.receipt_delay.sample(self._random)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def due() -> None:
            self._timers.discard(timer)
            self._due.put_nowait(receipt.model_copy(update={"at": datetime.now(UTC)}))

        timer = loop.call_later(delay, due)
        self._timers.add(timer)
        self._outstanding += 1

    async def _apply_batches(self, sink: ReceiptSink) -> None:
        # One transaction for the receipts that came due together, as SMPP does: per
        # receipt, the store's lock and commit would cap receipts below the send rate.
        while True:
            batch = [await self._due.get()]
            await asyncio.sleep(RECEIPT_LINGER)
            while len(batch) < RECEIPT_BATCH and not self._due.empty():
                batch.append(self._due.get_nowait())
            try:
                await self._apply(sink, batch)
            finally:
                self._outstanding -= len(batch)
                for _ in batch:
                    self._due.task_done()

    async def _apply(self, sink: ReceiptSink, batch: list[Receipt]) -> None:
        ids = "|".join(r.provider_message_id or "" for r in batch)
        digest = hashlib.sha256(ids.encode()).hexdigest()
        delay = 0.2
        for _ in range(8):
            try:
                await sink.deliver(self.name, digest, batch)
                return
            except StaleReceipt:
                return
            except Exception as exc:  # the store is down: keep the batch, try again
                log.warning("sim_receipt_deferred", provider=self.name, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.error("sim_receipts_dropped", provider=self.name, count=len(batch))
