"""OpenTelemetry tracing: off unless the standard ``OTEL_*`` environment turns it on.

Only ``opentelemetry-api`` is imported here: with no SDK installed or configured, every
span is the API's non-recording no-op. ``setup`` installs the SDK (the ``tracing``
extra) when ``OTEL_TRACES_EXPORTER`` names an exporter or an OTLP endpoint is set; the
SDK itself reads the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_*``). A process
whose tracer provider is already installed (``opentelemetry-instrument``, a test) is
left as it is.

The trace context crosses AMQP in the W3C ``traceparent``/``tracestate`` headers of the
message, injected and extracted here rather than by the contrib aio-pika
instrumentation, whose consumer span ends when the consume callback returns (ours only
schedules the work) and which loses the context with queue iterators (contrib #2892,
#1993). Header values from the wire are read only when they are short strings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from smsrelay.errors import ConfigError

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "answered",
    "calling",
    "consuming",
    "dispatching",
    "enabled",
    "extract",
    "inject",
    "link_to",
    "messaging_attributes",
    "note",
    "publishing",
    "serving",
    "setup",
    "span",
    "traceparent",
    "tracer",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# W3C: a traceparent is 55 characters; a tracestate of up to 32 members must be carried
# in at least 512. Longer values are ignored, not parsed.
_MAX_HEADER = {TRACEPARENT: 128, TRACESTATE: 1024}

tracer = trace.get_tracer("smsrelay")
_unconfigured = tracer


def enabled() -> bool:
    """True once a tracer provider is installed (by ``setup``, the application, a test).

    Until then every helper here returns at once: tracing off costs a check per call.
    """
    return tracer is not _unconfigured or not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    )


def setup(default_service_name: str) -> bool:
    """Install the SDK's tracer provider if ``OTEL_*`` asks for traces; True when tracing.

    ``ConfigError`` when traces are asked for but the SDK (``smsrelay[tracing]``) or the
    named exporter is not installed.
    """
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True  # someone configured OpenTelemetry already
    if not _asked_for(os.environ):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER", "the SDK is missing: pip install 'smsrelay[tracing]'"
        ) from exc
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": default_service_name}))
    provider = TracerProvider(resource=resource)
    for exporter in _exporters(os.environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # The SDK's tracer itself, not the API's proxy to it: ~10 µs a message less.
    global tracer
    tracer = provider.get_tracer("smsrelay")
    return True


def _asked_for(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporters(env: Mapping[str, str]) -> list[Any]:
    """The span exporters named by ``OTEL_TRACES_EXPORTER`` (default ``otlp``), as the SDK
    names them: entry points of ``opentelemetry_traces_exporter``; ``otlp`` is the OTLP
    exporter of ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` (default ``http/protobuf``)."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    found = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
        points = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not points:
            raise ConfigError("OTEL_TRACES_EXPORTER", f"no span exporter {name!r} is installed")
        found.append(next(iter(points)).load()())
    return found


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads trace headers from AMQP or HTTP headers: short strings only."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("latin-1") if len(value) <= _MAX_HEADER.get(key, 0) else None
        if not isinstance(value, str) or len(value) > _MAX_HEADER.get(key, 0):
            return None
        return [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key in (TRACEPARENT, TRACESTATE) if key in carrier]


_getter = _HeaderGetter()


def extract(headers: Mapping[str, Any] | None) -> Context:
    """The trace context carried by ``headers`` (an empty one when none or malformed)."""
    return propagate.extract(headers or {}, getter=_getter)


def inject(headers: MutableMapping[str, Any]) -> None:
    """Write the current trace context into ``headers`` (nothing when none is recording)."""
    if enabled():
        propagate.inject(headers)


def traceparent() -> str | None:
    """The current span's W3C traceparent, to be stored; None unless it is sampled.

    Written directly (not through the configured propagators, which need not be W3C):
    ``link_to`` reads it back. An unsampled span is exported nowhere: nothing to link to.
    """
    if not enabled():
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags & 0xFF:02x}"


_W3C = TraceContextTextMapPropagator()


def link_to(stored: str | None, **attributes: str) -> Link | None:
    """A link to the span whose ``traceparent`` was stored; None when there is none."""
    if not stored:
        return None
    span = trace.get_current_span(_W3C.extract({TRACEPARENT: stored}, getter=_getter))
    context = span.get_span_context()
    return Link(context, attributes) if context.is_valid else None


def messaging_attributes(
    operation: str, message_id: str | None, routing_key: str | None, exchange: str
) -> dict[str, Any]:
    """OpenTelemetry messaging semantic conventions for RabbitMQ."""
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send" if operation == "publish" else operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": exchange,
    }
    if routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    context: Context | None = None,
    links: list[Link] | None = None,
) -> Iterator[Span]:
    """A current span; an exception marks it failed by class only.

    The SDK's own exception recording is off: an exception's message may quote what a
    caller sent (a number, a body), which must not reach a trace backend.
    """
    if not enabled():
        yield INVALID_SPAN
        return
    if context is None and (parent := _under_sampled_out()) is not None:
        yield parent
        return
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            failed(current, exc)
            raise


def _sampled_out(current: Span) -> bool:
    context = current.get_span_context()
    return context.is_valid and not context.trace_flags.sampled


def _under_sampled_out() -> Span | None:
    """The current span if it was not sampled: with the usual parent-based samplers its
    children would not be either, so none is made (a sampled-out message's cost)."""
    current = trace.get_current_span()
    return current if _sampled_out(current) else None


@contextmanager
def _within(context: Context) -> Iterator[Span]:
    """``context`` made current for the block, without a span of our own."""
    token = context_api.attach(context)
    try:
        yield trace.get_current_span(context)
    finally:
        context_api.detach(token)


def publishing(
    message_id: str | None, exchange: str, routing_key: str, headers: MutableMapping[str, Any]
) -> AbstractContextManager[Span]:
    """A PRODUCER span around one publish; its context is written into ``headers``."""
    if not enabled():
        return nullcontext(INVALID_SPAN)
    return _publishing(message_id, exchange, routing_key, headers)


@contextmanager
def _publishing(
    message_id: str | None, exchange: str, routing_key: str, headers: MutableMapping[str, Any]
) -> Iterator[Span]:
    attributes = messaging_attributes("publish", message_id, routing_key, exchange)
    with span(f"publish {exchange}", kind=SpanKind.PRODUCER, attributes=attributes) as current:
        propagate.inject(headers)
        yield current


def note(attributes: Mapping[str, Any]) -> None:
    """Set ``attributes`` (those not None) on the current span, if it records."""
    if not enabled():
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def consuming(
    message_id: str | None,
    exchange: str,
    routing_key: str | None,
    headers: Mapping[str, Any] | None,
    retry_round: int,
) -> AbstractContextManager[Span]:
    """A CONSUMER span around processing one delivery, child of the publisher's context.

    A delivery whose publisher did not sample its trace gets no span (as a parent-based
    sampler decides): its context is only made current, so that a retry or a dead
    letter carries it on.
    """
    if not enabled():
        return nullcontext(INVALID_SPAN)
    context = extract(headers)
    if _sampled_out(trace.get_current_span(context)):
        return _within(context)
    attributes = messaging_attributes("process", message_id, routing_key, exchange)
    if retry_round:
        attributes["smsrelay.retry_round"] = retry_round
    return span(
        f"process {exchange}", kind=SpanKind.CONSUMER, attributes=attributes, context=context
    )


def dispatching(message_id: str) -> AbstractContextManager[Span]:
    """The span of one request's routing, sends and records (``smsrelay.dispatch``)."""
    if not enabled():
        return nullcontext(INVALID_SPAN)
    return span("smsrelay.dispatch", attributes={"smsrelay.message.id": message_id})


def serving(method: str, route: str, headers: Mapping[str, Any]) -> AbstractContextManager[Span]:
    """A SERVER span for one API request, continuing the caller's trace if it sent one."""
    if not enabled():
        return nullcontext(INVALID_SPAN)
    attributes = {"http.request.method": method, "http.route": route}
    return span(
        f"{method} {route}", kind=SpanKind.SERVER, attributes=attributes, context=extract(headers)
    )


def calling(provider: str, method: str, url: str) -> AbstractContextManager[Span]:
    """A CLIENT span for one provider call (HTTP semantic conventions)."""
    if not enabled():
        return nullcontext(INVALID_SPAN)
    if (parent := _under_sampled_out()) is not None:
        return nullcontext(parent)  # and the URL is not even parsed
    return span(method, kind=SpanKind.CLIENT, attributes=_http_client(provider, method, url))


def answered(status: int) -> None:
    """Record an HTTP status on the current span; 4xx/5xx make it an error, by status."""
    if not enabled():
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attribute("http.response.status_code", status)
        if status >= 400:
            current.set_attribute("error.type", str(status))
            current.set_status(Status(StatusCode.ERROR))


def _http_client(provider: str, method: str, url: str) -> dict[str, Any]:
    """HTTP client attributes; the URL without its query or credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # aiohttp refuses it anyway; the span need not
        port = None
    host = parts.hostname or ""
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.full": f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}",
        "server.address": host,
        "smsrelay.provider": provider,
    }
    if port:
        attributes["server.port"] = port
    return attributes


def failed(current: Span, exc: BaseException) -> None:
    """Mark ``current`` as failed with ``exc``'s class (never its message: it may quote input)."""
    if current.is_recording():
        current.set_attribute("error.type", type(exc).__qualname__)
        current.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
