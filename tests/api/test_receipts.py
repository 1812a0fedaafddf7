"""POST /v1/receipts/{provider}: verified before read, refused with 401/403, applied to the message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import func, select

from smsrelay.api import AmqpPublisher
from smsrelay.api.context import context_of
from smsrelay.api.receipts import drain_outbox
from smsrelay.dispatch import Dispatcher, Done
from smsrelay.models import (
    Receipt,
    ReceiptStatus,
    SendRequest,
    SendResult,
    State,
    StatusEvent,
    validate_request,
)
from smsrelay.providers import Provider, ProviderSettings
from smsrelay.providers.twilio import twilio_signature
from smsrelay.routing import Router
from smsrelay.settings import RetrySettings
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.receipts import ReceiptStore
from smsrelay.store.schema import receipt_digests, receipts
from tests.api.support import (
    PARTS_SECRET,
    PUBLIC_URL,
    Api,
    MemoryPublisher,
    api_settings,
    auth,
    running_api,
    twilio_callback,
)
from tests.conftest import eventually
from tests.integration.harness import event_log

SID = "SM" + "5" * 32


async def sent(
    store: SqlStore, message_id: str = "m-1", pmid: str = SID, provider: str = "twilio"
) -> None:
    """A message recorded as sent with provider id ``pmid``."""
    await store.claim(validate_request({"id": message_id, "to": "+14155550123", "body": "hi"}))
    key = await store.start_attempt(message_id, 1, provider)
    await store.finish_message(
        message_id,
        State.SENT,
        provider=provider,
        provider_message_id=pmid,
        segments=1,
        closing_attempt=key,
    )


async def state(store: SqlStore, message_id: str = "m-1") -> State | None:
    """The message's state."""
    record = await store.get(message_id)
    return record.state if record else None


async def rows(store: SqlStore, table: Any) -> int:
    """Rows in ``table``."""
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def post_twilio(
    api: Api, body: bytes, headers: dict[str, str], path: str = "/v1/receipts/twilio"
) -> Any:
    """POST a callback the way Twilio does."""
    return await api.client.post(path, content=body, headers=headers)


@pytest.fixture
async def any_store(database_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on SQLite or PostgreSQL."""
    store = SqlStore.from_url(database_url)
    await upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def test_signed_receipt_delivers_the_message_and_publishes_the_event(
    any_store: SqlStore, database_url: str, amqp_url: str
) -> None:
    """A correctly signed Twilio callback → 204, stored, `delivered`, and `sms.status.delivered` on sms.events."""
    await sent(any_store)
    publisher = AmqpPublisher(amqp_url)
    settings = api_settings(database_url, amqp_url)
    async with event_log(amqp_url) as events, running_api(settings, any_store, publisher) as api:
        await eventually(lambda: publisher.ready)
        answer = await post_twilio(api, *twilio_callback(SID, NumSegments="1"))
        assert answer.status_code == 204, answer.text
        assert await state(any_store) is State.DELIVERED
        await eventually(lambda: events.states("m-1") == ["delivered"])
        assert (
            await api.metric("smsrelay_receipts_total", provider="twilio", status="delivered") == 1
        )
    [kept] = await api.receipts.receipts_for("m-1")
    assert kept.provider_message_id == SID and kept.provider_status == "delivered"
    [event] = events.of("m-1")
    assert event["provider"] == "twilio" and event["provider_message_id"] == SID
    assert event["segments"] == 1 and event["error"] is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda body, headers: (body.replace(b"delivered", b"failed"), headers), "tampered body"),
        (
            lambda body, headers: (
                body,
                {**headers, "X-Twilio-Signature": "AAAA" + headers["X-Twilio-Signature"][4:]},
            ),
            "wrong signature",
        ),
        (
            lambda body, headers: (
                body,
                {k: v for k, v in headers.items() if k != "X-Twilio-Signature"},
            ),
            "missing header",
        ),
    ],
)
async def test_unverifiable_receipt_is_refused_401_and_changes_nothing(
    any_store: SqlStore, database_url: str, change: Any, why: str
) -> None:
    """Tampered body, wrong signature or no signature: 401, a refusal row and metric, nothing else stored."""
    await sent(any_store)
    async with running_api(api_settings(database_url), any_store, MemoryPublisher()) as api:
        answer = await post_twilio(api, *change(*twilio_callback(SID)))
        assert answer.status_code == 401, why
        assert answer.headers["www-authenticate"] == "Signature"
        assert "X-Twilio-Signature" in answer.json()["error"]["reason"]
        assert await api.metric("smsrelay_receipts_total", provider="twilio", status="refused") == 1
        [refusal] = await api.receipts.refusals()
        assert refusal.provider == "twilio"
    assert await state(any_store) is State.SENT
    assert await rows(any_store, receipts) == 0 and await rows(any_store, receipt_digests) == 0


async def test_receipt_signed_with_another_token_is_refused(api: Api, store: SqlStore) -> None:
    """A callback signed with a different auth token (someone else's account) is 401."""
    await sent(store)
    body, headers = twilio_callback(SID)
    params = sorted(parse_qsl(body.decode()))
    url = f"{PUBLIC_URL}/v1/receipts/twilio"
    headers["X-Twilio-Signature"] = twilio_signature(b"another-token", url, params)
    assert (await post_twilio(api, body, headers)).status_code == 401
    assert await state(store) is State.SENT


async def test_replayed_request_is_refused_403(any_store: SqlStore, database_url: str) -> None:
    """The exact same signed callback a second time is refused as replayed (403) and recorded."""
    await sent(any_store)
    async with running_api(api_settings(database_url), any_store, MemoryPublisher()) as api:
        body, headers = twilio_callback(SID, status="sent")
        assert (await post_twilio(api, body, headers)).status_code == 204
        again = await post_twilio(api, body, headers)
        assert again.status_code == 403
        assert "replayed" in again.json()["error"]["reason"]
        assert [r.reason for r in await api.receipts.refusals()] == [
            again.json()["error"]["reason"]
        ]
        assert await api.metric("smsrelay_receipts_total", provider="twilio", status="refused") == 1
    assert await rows(any_store, receipts) == 1


async def test_unknown_provider_name_is_404(api: Api) -> None:
    """A receipt for a provider name that is not configured is 404 and not recorded."""
    body, headers = twilio_callback(SID)
    answer = await post_twilio(api, body, headers, path="/v1/receipts/nope")
    assert answer.status_code == 404
    assert await api.receipts.refusals() == []


async def test_provider_without_receipts_refuses_every_webhook(api: Api) -> None:
    """The simulator has no receipt scheme: its endpoint answers 401."""
    answer = await api.client.post("/v1/receipts/simulator", content=b"{}")
    assert answer.status_code == 401


async def test_pending_receipt_is_kept_without_changing_the_state(
    api: Api, store: SqlStore
) -> None:
    """A `sent` callback is stored in the history; the message stays `sent` and no event goes out."""
    await sent(store)
    assert (await post_twilio(api, *twilio_callback(SID, status="sent"))).status_code == 204
    assert await state(store) is State.SENT
    assert isinstance(api.publisher, MemoryPublisher) and api.publisher.events == []
    assert [r.provider_status for r in await api.receipts.receipts_for("m-1")] == ["sent"]


async def test_failed_receipt_fails_the_message_with_the_error_code(
    api: Api, store: SqlStore
) -> None:
    """An undelivered callback with ErrorCode sets `undelivered` and carries twilio:<code>."""
    await sent(store)
    answer = await post_twilio(api, *twilio_callback(SID, status="undelivered", ErrorCode="30003"))
    assert answer.status_code == 204
    record = await store.get("m-1")
    assert record is not None and record.state is State.UNDELIVERED
    assert record.error_code == "twilio:30003"
    assert isinstance(api.publisher, MemoryPublisher)
    [event] = api.publisher.events
    assert event.routing_key == "sms.status.undelivered"


async def test_receipt_before_the_send_is_kept_and_matched_on_the_next_look(
    api: Api, store: SqlStore
) -> None:
    """A callback that overtakes the worker is kept unmatched; once the send is recorded, GET applies it."""
    assert (await post_twilio(api, *twilio_callback(SID))).status_code == 204
    assert len(await api.receipts.unmatched("twilio")) == 1
    await sent(store)
    assert await state(store) is State.SENT
    answer = await api.client.get("/v1/messages/m-1", headers=auth())
    assert answer.json()["state"] == "delivered"
    assert [r["provider_status"] for r in answer.json()["receipts"]] == ["delivered"]
    assert isinstance(api.publisher, MemoryPublisher)
    assert [e.state for e in api.publisher.events] == [State.DELIVERED]


async def test_receipt_before_the_send_is_matched_by_the_next_receipt(
    api: Api, store: SqlStore
) -> None:
    """An early `sent` callback joins its message when the later `delivered` one arrives."""
    assert (await post_twilio(api, *twilio_callback(SID, status="sent"))).status_code == 204
    await sent(store)
    assert (await post_twilio(api, *twilio_callback(SID))).status_code == 204
    assert [r.provider_status for r in await api.receipts.receipts_for("m-1")] == [
        "sent",
        "delivered",
    ]
    assert await state(store) is State.DELIVERED


def parts_receipts(*parts: int, of: int, status: str = "delivered") -> bytes:
    """A parts-provider webhook body reporting ``parts`` of ``of``."""
    return json.dumps(
        [
            {
                "provider_message_id": "P1",
                "status": status,
                "provider_status": status,
                "part": p,
                "parts": of,
            }
            for p in parts
        ]
    ).encode()


async def test_multipart_message_is_delivered_only_when_every_part_is(
    api: Api, store: SqlStore
) -> None:
    """Two of three parts delivered leave the message `sent`; the third part delivers it, with segments=3."""
    await sent(store, pmid="P1", provider="parts")
    headers = {"x-parts-secret": PARTS_SECRET}
    assert (
        await api.client.post(
            "/v1/receipts/parts", content=parts_receipts(1, 2, of=3), headers=headers
        )
    ).status_code == 204
    assert await state(store) is State.SENT
    assert (
        await api.client.post(
            "/v1/receipts/parts", content=parts_receipts(3, of=3), headers=headers
        )
    ).status_code == 204
    assert await state(store) is State.DELIVERED
    assert isinstance(api.publisher, MemoryPublisher)
    [event] = api.publisher.events
    assert event.state is State.DELIVERED and event.segments == 3
    assert await api.metric("smsrelay_receipts_total", provider="parts", status="delivered") == 3


async def test_broker_down_keeps_the_receipt_and_the_event_waits_in_the_outbox(
    api: Api, store: SqlStore
) -> None:
    """With the broker down the receipt is taken (204); its event goes out at the next drain."""
    await sent(store)
    assert isinstance(api.publisher, MemoryPublisher)
    api.publisher.down = True
    body, headers = twilio_callback(SID)
    assert (await post_twilio(api, body, headers)).status_code == 204
    assert await state(store) is State.DELIVERED and api.publisher.events == []
    assert (await post_twilio(api, body, headers)).status_code == 403  # kept: a replay now
    api.publisher.down = False
    assert await drain_outbox(context_of(api.app)) == 1
    assert [e.state for e in api.publisher.events] == [State.DELIVERED]
    assert await api.receipts.outbox() == []


async def test_events_left_in_the_outbox_are_published_at_start_up(
    store: SqlStore, sqlite_url: str
) -> None:
    """An event committed by a process that died before publishing goes out when the API starts."""
    await sent(store)
    left = ReceiptStore(store)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    delivered = Receipt(
        provider_message_id=SID, status=ReceiptStatus.DELIVERED, provider_status="delivered"
    )
    await left.accept("twilio", "digest-1", [delivered], long_ago)
    publisher = MemoryPublisher()
    async with running_api(api_settings(sqlite_url), store, publisher) as api:
        await eventually(lambda: [e.state for e in publisher.events] == [State.DELIVERED])
        await eventually(lambda: _empty(api.receipts.outbox()))


async def _empty(pending: Awaitable[list[Any]]) -> bool:
    """Whether the awaited list is empty."""
    return not await pending


async def test_forwarded_proto_and_host_name_the_signed_url(
    store: SqlStore, sqlite_url: str
) -> None:
    """Without public_url, X-Forwarded-Proto/Host rebuild the URL the provider signed."""
    await sent(store)
    settings = api_settings(sqlite_url, public_url=None)
    async with running_api(settings, store, MemoryPublisher()) as api:
        body, headers = twilio_callback(SID, url="https://relay.example.org/v1/receipts/twilio")
        assert (
            await post_twilio(api, body, headers)
        ).status_code == 401  # seen as http://testserver
        forwarded = {
            **headers,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "relay.example.org",
        }
        assert (await post_twilio(api, body, forwarded)).status_code == 204


async def test_public_url_is_the_url_providers_sign(api: Api, store: SqlStore) -> None:
    """With public_url set, a callback signed for it verifies although the app is reached as http://testserver."""
    await sent(store)
    body, headers = twilio_callback(SID, url=f"{PUBLIC_URL}/v1/receipts/twilio")
    assert (await post_twilio(api, body, headers)).status_code == 204


async def test_unreadable_verified_webhook_is_400_and_recorded(api: Api) -> None:
    """A webhook that verifies but cannot be parsed is refused 400 and recorded."""
    answer = await api.client.post(
        "/v1/receipts/parts", content=b"not json", headers={"x-parts-secret": PARTS_SECRET}
    )
    assert answer.status_code == 400
    assert [r.reason for r in await api.receipts.refusals()] == ["unreadable: JSONDecodeError"]


async def test_receipts_sent_as_get_queries_are_told_apart_by_their_query(
    api: Api, store: SqlStore
) -> None:
    """GET reports differ only in their query: each is taken once, the same query again is a replay."""
    await sent(store, pmid="P1", provider="parts")
    headers = {"x-parts-secret": PARTS_SECRET}
    first = {"provider_message_id": "P1", "status": "pending", "provider_status": "buffered"}
    second = {**first, "status": "delivered", "provider_status": "delivered"}
    assert (
        await api.client.get("/v1/receipts/parts", params=first, headers=headers)
    ).status_code == 204
    assert (
        await api.client.get("/v1/receipts/parts", params=second, headers=headers)
    ).status_code == 204
    assert (
        await api.client.get("/v1/receipts/parts", params=second, headers=headers)
    ).status_code == 403
    assert await state(store) is State.DELIVERED
    assert len(await api.receipts.receipts_for("m-1")) == 2


class _FixedSid(Provider):
    """Answers every send with the same Twilio message sid."""

    type_name: ClassVar[str] = "fixed"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    async def send(self, request: SendRequest) -> SendResult:
        return SendResult(provider_message_id=SID, segments=1)


class _Events:
    def __init__(self) -> None:
        self.events: list[StatusEvent] = []

    async def publish(self, event: StatusEvent) -> None:
        self.events.append(event)


async def test_receipt_before_the_send_is_applied_when_the_worker_records_it(
    api: Api, store: SqlStore
) -> None:
    """The worker itself applies a receipt that overtook it: delivered right after sent."""
    assert (await post_twilio(api, *twilio_callback(SID))).status_code == 204
    events = _Events()
    relay = Dispatcher(
        store,
        {"twilio": _FixedSid("twilio", ProviderSettings(type="fixed"))},
        Router({"*": ["twilio"]}),
        events,
        RetrySettings(),
    )
    raw = json.dumps({"id": "m-1", "to": "+14155550123", "body": "hi"}).encode()
    assert await relay.handle(raw) == Done(State.SENT)
    assert [e.state for e in events.events] == [State.SENT, State.DELIVERED]
    assert await state(store) is State.DELIVERED


async def test_a_forwarded_host_with_a_bad_port_is_refused_not_a_500(
    store: SqlStore, sqlite_url: str
) -> None:
    """X-Forwarded-Host `host:abc` (no port number) makes the signed URL unverifiable: 401."""
    settings = api_settings(sqlite_url, public_url=None)
    async with running_api(settings, store, MemoryPublisher()) as api:
        body, headers = twilio_callback(SID, url="https://relay.example.org/v1/receipts/twilio")
        forwarded = {**headers, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "relay:abc"}
        assert (await post_twilio(api, body, forwarded)).status_code == 401
