"""Turning tracing on with the standard OTEL_* variables, and reading hostile trace headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from opentelemetry import trace

from smsrelay import telemetry
from smsrelay.errors import ConfigError

# One span through smsrelay's own helpers, after smsrelay's own setup.
PROGRAM = """
from smsrelay import telemetry
print("on" if telemetry.setup("smsrelay-worker") else "off", flush=True)
with telemetry.dispatching("m-1"):
    pass
"""


def run(**env: str) -> subprocess.CompletedProcess[str]:
    """Run PROGRAM with only these OTEL_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def spans_printed(stdout: str) -> list[dict[str, object]]:
    """The spans the console exporter printed (one JSON object each)."""
    decoder, out, text = json.JSONDecoder(), [], stdout.split("\n", 1)[1]
    while text.strip():
        span, end = decoder.raw_decode(text.strip())
        out.append(span)
        text = text.strip()[end:]
    return out


def test_tracing_is_off_without_otel_variables() -> None:
    """No OTEL_* variable: setup installs nothing and no span is exported."""
    result = run()
    assert result.stdout == "off\n"


def test_otel_traces_exporter_turns_tracing_on_with_the_sdks_own_settings() -> None:
    """OTEL_TRACES_EXPORTER=console exports smsrelay's spans; the service name defaults to smsrelay-worker."""
    result = run(OTEL_TRACES_EXPORTER="console")
    assert result.stdout.startswith("on\n")
    (span,) = spans_printed(result.stdout)
    assert span["name"] == "smsrelay.dispatch"
    assert span["attributes"] == {"smsrelay.message.id": "m-1"}
    resource = span["resource"]
    assert isinstance(resource, dict)
    assert resource["attributes"]["service.name"] == "smsrelay-worker"


def test_otel_service_name_and_sampler_are_the_sdks() -> None:
    """OTEL_SERVICE_NAME wins over smsrelay's default; OTEL_TRACES_SAMPLER=always_off exports nothing."""
    named = run(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="relay-eu")
    assert spans_printed(named.stdout)[0]["resource"]["attributes"]["service.name"] == "relay-eu"  # type: ignore[index]
    sampled_out = run(OTEL_TRACES_EXPORTER="console", OTEL_TRACES_SAMPLER="always_off")
    assert sampled_out.stdout == "on\n"


def test_otel_sdk_disabled_and_exporter_none_keep_tracing_off() -> None:
    """OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: off, whatever else is set."""
    assert run(OTEL_SDK_DISABLED="true", OTEL_TRACES_EXPORTER="console").stdout == "off\n"
    assert run(OTEL_TRACES_EXPORTER="none").stdout == "off\n"


def test_an_otlp_endpoint_alone_turns_tracing_on() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: the OTLP/HTTP exporter (the `tracing` extra) is used."""
    assert telemetry._asked_for({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    (exporter,) = telemetry._exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    exporter.shutdown()


def test_an_unknown_exporter_is_a_config_error() -> None:
    """OTEL_TRACES_EXPORTER naming no installed exporter refuses to start, naming the variable."""
    with pytest.raises(ConfigError) as caught:
        telemetry._exporters({"OTEL_TRACES_EXPORTER": "zipkin_nowhere"})
    assert caught.value.key == "OTEL_TRACES_EXPORTER"


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-" + "a" * 100_000 + "-b7ad6b7169203331-01"},
        {"traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" * 1000},
        {"traceparent": 42},
        {"traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]},
        {"traceparent": "not-a-traceparent", "tracestate": "x" * 100_000},
        {"traceparent": "\udcff" * 50},
        None,
    ],
)
def test_hostile_trace_headers_give_an_empty_context_quickly(headers: object) -> None:
    """Oversized, binary, non-text or malformed trace headers are ignored, in linear time."""
    started = time.perf_counter()
    context = telemetry.extract(headers)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 0.5  # a quadratic parse of 100 kB would take far longer
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_a_short_binary_traceparent_is_read() -> None:
    """A traceparent that reached AMQP as bytes (another client's encoding) still continues the trace."""
    value = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    span = trace.get_current_span(telemetry.extract({"traceparent": value}))
    assert span.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_nothing_is_injected_while_tracing_is_off() -> None:
    """With no SDK provider, a publish adds no header and stores no trace context."""
    headers: dict[str, object] = {}
    with telemetry.publishing("m-1", "sms", "sms.send", headers):
        assert telemetry.traceparent() is None
    assert headers == {}
