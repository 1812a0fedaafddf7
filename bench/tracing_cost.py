"""What smsrelay's tracing costs per message, in CPU µs, without a broker or a provider.

``python -m bench.tracing_cost [--n 20000]`` runs, for each message, the spans and
context work a worker does (extract the AMQP headers, ``process sms``,
``smsrelay.dispatch`` with its notes, the provider's ``POST`` client span, the
traceparent stored with the send) three ways: tracing off (the API's no-op), on and
sampled with the SDK's batch processor and an OTLP exporter that encodes every span
to protobuf and drops it, and on but sampled out (``always_off``). CPU is
``time.process_time`` (every thread: the batch processor's export thread included).
Compare with the worker's CPU per message in the bench (bench/README.md).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from smsrelay import telemetry

HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
URL = "http://127.0.0.1:8099/2010-04-01/Accounts/AC0123/Messages.json"


class EncodingExporter(SpanExporter):
    """Encodes spans as the OTLP exporter does, then drops them (no network)."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


def one_message(i: int) -> None:
    """The telemetry calls of one delivery in the worker, in order."""
    message_id = f"m-{i}"
    consuming = telemetry.consuming(message_id, "sms", "sms.send", HEADERS, 0)
    with consuming, telemetry.dispatching(message_id):
        telemetry.note({"smsrelay.route": ["twilio"], "smsrelay.country": "US"})
        with telemetry.calling("twilio", "POST", URL):
            telemetry.answered(201)
        telemetry.traceparent()
        telemetry.note({"smsrelay.state": "sent", "smsrelay.provider": "twilio"})


def measure(n: int, sampler: Sampler | None) -> float:
    """CPU µs per message with ``sampler`` (None: tracing off)."""
    provider = None
    if sampler is not None:
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(EncodingExporter()))
        telemetry.tracer = provider.get_tracer("smsrelay")
    for i in range(min(n, 1000)):  # warm-up
        one_message(i)
    started = time.process_time()
    for i in range(n):
        one_message(i)
    if provider is not None:
        provider.shutdown()  # flushes: the export of every span is counted
    return (time.process_time() - started) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    """Print µs per message off, on (sampled) and on (sampled out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args(argv)
    off = telemetry.tracer
    results = {"off": measure(args.n, None)}
    results["on, always_on"] = measure(args.n, ALWAYS_ON)
    telemetry.tracer = off
    results["on, always_off"] = measure(args.n, ALWAYS_OFF)
    for name, value in results.items():
        print(f"{name:16} {value:8.1f} µs/msg")


if __name__ == "__main__":
    main()
