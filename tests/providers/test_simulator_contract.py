"""The simulator keeps the provider contract too: it has no wire format, so no spec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from smsrelay.providers.simulator import SimulatorSettings
from tests.providers.contract import CapturedRequest, ProviderContractTest


@dataclass
class SimulatorStage:
    """Stands in for a fake server: the simulator fails by configuration, not over HTTP."""

    permanent: list[str] = field(default_factory=list)
    transient: list[str] = field(default_factory=list)


class TestSimulatorContract(ProviderContractTest):
    """The simulator returns ids and maps its failures like a real provider."""

    provider_type = "simulator"
    spec = None

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[SimulatorStage]:
        yield SimulatorStage()

    def settings(self, fake: SimulatorStage) -> SimulatorSettings:
        return SimulatorSettings(
            permanent_failure_numbers=fake.permanent, transient_failure_numbers=fake.transient
        )

    def arrange_failure(self, fake: SimulatorStage, to: str, kind: str) -> None:
        {"recipient": fake.permanent, "transient": fake.transient}[kind].append(to)

    def captured(self, fake: SimulatorStage) -> list[CapturedRequest]:
        return []
