"""Tracing fixtures: smsrelay's tracer on an SDK provider with an in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from smsrelay import telemetry
from tests.conftest import eventually


class Spans:
    """The spans smsrelay ended during one test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    @property
    def all(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        """Finished spans called ``name``."""
        return [s for s in self.all if s.name == name]

    def of(self, name: str, attribute: str, value: object) -> list[ReadableSpan]:
        """Finished spans called ``name`` whose ``attribute`` is ``value``."""
        return [s for s in self.named(name) if (s.attributes or {}).get(attribute) == value]

    async def wait(self, name: str, attribute: str, value: object, count: int = 1) -> None:
        """Wait until ``count`` such spans ended."""
        await eventually(lambda: len(self.of(name, attribute, value)) >= count, seconds=60)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    """smsrelay traced (sampled) into memory for this test; the process-wide provider untouched."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", provider.get_tracer("smsrelay"))
    yield Spans(exporter)
    provider.shutdown()
