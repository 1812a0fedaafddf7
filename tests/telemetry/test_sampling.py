"""What a message its producer did not sample costs the worker: no span, no stored context."""

from __future__ import annotations

from smsrelay import telemetry
from tests.telemetry.conftest import Spans

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
NOT_SAMPLED = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"}
URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"


def deliver(headers: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """The worker's telemetry calls for one delivery: the traceparent it stores, the headers
    a retry of it would carry."""
    carried: dict[str, str] = {}
    with telemetry.consuming("m-1", "sms", "sms.send", headers, 0):
        with telemetry.dispatching("m-1"):
            with telemetry.calling("twilio", "POST", URL):
                telemetry.answered(201)
            stored = telemetry.traceparent()
            telemetry.note({"smsrelay.state": "sent"})
        telemetry.inject(carried)
    return stored, carried


def test_a_message_its_producer_did_not_sample_makes_no_span_and_stores_no_context(
    spans: Spans,
) -> None:
    """traceparent flags 00: no span is made, nothing is stored for a receipt to link to, and a retry carries the producer's unsampled context on."""
    stored, carried = deliver(NOT_SAMPLED)
    assert spans.all == []
    assert stored is None
    assert carried["traceparent"] == NOT_SAMPLED["traceparent"]


def test_a_sampled_sends_stored_traceparent_links_back_to_its_dispatch_span(
    spans: Spans,
) -> None:
    """The stored W3C traceparent of a sampled send is the dispatch span's; link_to reads it back."""
    stored, _ = deliver({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})
    [dispatch] = spans.named("smsrelay.dispatch")
    assert stored == f"00-{TRACE_ID}-{dispatch.context.span_id:016x}-01"
    link = telemetry.link_to(stored, **{"smsrelay.message.id": "m-1"})
    assert link is not None and link.context.span_id == dispatch.context.span_id
    assert [s.name for s in spans.all] == ["POST", "smsrelay.dispatch", "process sms"]
