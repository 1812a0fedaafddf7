"""What smsrelay's tracing costs per message, in CPU µs, without a broker or a provider.

``python -m bench.tracing_cost [--n 20000]`` runs, for each message, the spans and
context work a worker does (extract the AMQP headers, ``process sms``,
``smsrelay.dispatch`` with its notes, the provider's ``POST`` client span, the
traceparent stored with the send): tracing off (the API's no-op); on, with the SDK's
batch processor and an OTLP exporter that encodes every span to protobuf and drops it,
every message sampled (``always_on``), 10 % and 1 % of them
(``parentbased_traceidratio``, messages without trace context: the worker decides),
none (``always_off``: the worker decides, and drops), and messages whose producer did
not sample them (``traceparent`` flags ``00``). CPU is ``time.process_time`` (every
thread: the batch processor's export thread included). Compare with the worker's CPU
per message in the bench (bench/README.md).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from smsrelay import telemetry

SAMPLED = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
NOT_SAMPLED = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
URL = "http://127.0.0.1:8099/2010-04-01/Accounts/AC0123/Messages.json"


class EncodingExporter(SpanExporter):
    """Encodes spans as the OTLP exporter does, then drops them (no network)."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


def one_message(i: int, headers: dict[str, str] | None) -> None:
    """The telemetry calls of one delivery in the worker, in order."""
    message_id = f"m-{i}"
    consuming = telemetry.consuming(message_id, "sms", "sms.send", headers, 0)
    with consuming, telemetry.dispatching(message_id):
        telemetry.note({"smsrelay.route": ["twilio"], "smsrelay.country": "US"})
        with telemetry.calling("twilio", "POST", URL):
            telemetry.answered(201)
        telemetry.traceparent()
        telemetry.note({"smsrelay.state": "sent", "smsrelay.provider": "twilio"})


def measure(n: int, sampler: Sampler | None, headers: dict[str, str] | None) -> float:
    """CPU µs per message with ``sampler`` (None: tracing off)."""
    off = telemetry.tracer
    provider = None
    if sampler is not None:
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(EncodingExporter()))
        telemetry.tracer = provider.get_tracer("smsrelay")
    try:
        for i in range(min(n, 1000)):  # warm-up
            one_message(i, headers)
        started = time.process_time()
        for i in range(n):
            one_message(i, headers)
        if provider is not None:
            provider.shutdown()  # flushes: the export of every span is counted
        return (time.process_time() - started) / n * 1e6
    finally:
        telemetry.tracer = off


CASES: dict[str, tuple[Sampler | None, dict[str, str] | None]] = {
    "off": (None, None),
    "on, always_on": (ALWAYS_ON, SAMPLED),
    "on, 10 % (worker decides)": (ParentBased(TraceIdRatioBased(0.1)), None),
    "on, 1 % (worker decides)": (ParentBased(TraceIdRatioBased(0.01)), None),
    "on, always_off": (ALWAYS_OFF, None),
    "on, producer sampled out": (ParentBased(ALWAYS_ON), NOT_SAMPLED),
}


def main(argv: list[str] | None = None) -> None:
    """Print µs per message for each case, ``--repeats`` times (interleaved)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, (sampler, headers) in CASES.items():
            results[name].append(measure(args.n, sampler, headers))
    for name, values in results.items():
        runs = " / ".join(f"{v:.1f}" for v in values)
        print(f"{name:28} {sorted(values)[len(values) // 2]:7.1f} µs/msg (runs: {runs})")


if __name__ == "__main__":
    main()
