"""A provider that sends nothing: latency, failures and a record, for demos, tests and load.

It behaves like a real provider from the worker's point of view: it can be slow,
fail transiently at a configured rate, reject configured numbers permanently, and it
records what it "sent" (in memory, and as JSON lines when ``record_path`` is set, so
another process can count deliveries).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import ClassVar, Literal

from smsrelay import segments
from smsrelay.errors import RecipientRejected, TransientProviderError
from smsrelay.models import SendRequest, SendResult
from smsrelay.providers.base import Provider, ProviderSettings


class SimulatorSettings(ProviderSettings):
    """``latency_ms``, ``failure_rate`` (0..1, transient), failing numbers, ``record_path``."""

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
        result = SendResult(
            provider_message_id=f"sim-{uuid.uuid4().hex}", segments=segments.count(request.body)
        )
        self.sent.append(request)
        if self._record is not None:
            self._append(request, result)
        return result

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
