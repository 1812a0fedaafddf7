"""Replays refused whatever their bytes: the digest is over what each signature covers."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smsrelay.models import State
from smsrelay.providers.twilio import twilio_signature
from smsrelay.store import SqlStore
from tests.api.support import (
    PUBLIC_URL,
    TWILIO_TOKEN,
    Api,
    MemoryPublisher,
    api_settings,
    running_api,
    twilio_callback,
)
from tests.api.test_receipts import SID, sent, state
from tests.fakes import plivo as plivo_fake
from tests.fakes import vonage as vonage_fake
from tests.fakes.telnyx import public_key_of, signed_event

TELNYX_KEY = Ed25519PrivateKey.generate()
PROVIDERS: dict[str, Any] = {
    "plivo": {
        "type": "plivo",
        "auth_id": plivo_fake.AUTH_ID,
        "auth_token": plivo_fake.AUTH_TOKEN,
        "sender": "+14155550199",
    },
    "telnyx": {
        "type": "telnyx",
        "api_key": "KEY0123",
        "sender": "+14155550199",
        "public_key": public_key_of(TELNYX_KEY),
    },
    "vonage": {
        "type": "vonage",
        "api_key": vonage_fake.API_KEY,
        "api_secret": "secret12",
        "sender": "Acme",
        "signature_secret": vonage_fake.SIGNATURE_SECRET,
    },
}


@pytest.fixture
async def api(store: SqlStore, sqlite_url: str) -> AsyncIterator[Api]:
    """The app with Twilio, Plivo, Telnyx and Vonage configured."""
    settings = api_settings(sqlite_url)
    providers = {**settings.model_dump()["providers"], **PROVIDERS}
    settings = api_settings(sqlite_url, providers=providers)
    async with running_api(settings, store, MemoryPublisher()) as running:
        yield running


def url(provider: str) -> str:
    """The public URL a provider signs."""
    return f"{PUBLIC_URL}/v1/receipts/{provider}"


async def test_twilio_replay_with_reordered_parameters_is_refused(
    api: Api, store: SqlStore
) -> None:
    """A Twilio callback sent again with its form fields in another order is a replay (403)."""
    await sent(store)
    body, headers = twilio_callback(SID)
    assert (
        await api.client.post("/v1/receipts/twilio", content=body, headers=headers)
    ).status_code == 204
    reordered = "&".join(reversed(body.decode().split("&"))).encode()
    answer = await api.client.post("/v1/receipts/twilio", content=reordered, headers=headers)
    assert answer.status_code == 403, answer.text


async def test_twilio_replay_with_a_percent_encoded_name_is_refused(
    api: Api, store: SqlStore
) -> None:
    """`Message%53tatus` decodes to MessageStatus: the same signed callback, a replay."""
    await sent(store)
    body, headers = twilio_callback(SID)
    assert (
        await api.client.post("/v1/receipts/twilio", content=body, headers=headers)
    ).status_code == 204
    encoded = body.replace(b"MessageStatus", b"Message%53tatus")
    answer = await api.client.post("/v1/receipts/twilio", content=encoded, headers=headers)
    assert answer.status_code == 403, answer.text


async def test_a_replayed_delivered_never_undoes_a_later_undelivered(
    api: Api, store: SqlStore
) -> None:
    """Undelivered after delivered, then delivered re-encoded: delivered throughout, one event."""
    await sent(store)
    delivered, headers = twilio_callback(SID)
    assert (
        await api.client.post("/v1/receipts/twilio", content=delivered, headers=headers)
    ).status_code == 204
    undelivered = twilio_callback(SID, status="undelivered", ErrorCode="30003")
    await api.client.post("/v1/receipts/twilio", content=undelivered[0], headers=undelivered[1])
    replay = delivered.replace(b"MessageStatus", b"Message%53tatus")
    await api.client.post("/v1/receipts/twilio", content=replay, headers=headers)
    assert await state(store) is State.DELIVERED
    assert isinstance(api.publisher, MemoryPublisher)
    assert [e.state for e in api.publisher.events] == [State.DELIVERED]


async def test_twilio_duplicate_field_with_two_values_is_unreadable(api: Api) -> None:
    """Twilio signs a name's values sorted, so `MessageStatus` twice is ambiguous: 400."""
    params = [("MessageSid", SID), ("MessageStatus", "delivered"), ("MessageStatus", "failed")]
    signature = twilio_signature(TWILIO_TOKEN.encode(), url("twilio"), params)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    answer = await api.client.post(
        "/v1/receipts/twilio", content=urlencode(params), headers=headers
    )
    assert answer.status_code == 400


async def test_plivo_replay_with_reordered_parameters_is_refused(api: Api) -> None:
    """A Plivo callback sent again with reordered form fields is a replay (403)."""
    hook = plivo_fake.signed_callback(
        plivo_fake.callback("uuid-1"), "nonce-1", url=url("plivo") + "?smsrelay_id=m-1"
    )
    path = "/v1/receipts/plivo?smsrelay_id=m-1"
    assert (
        await api.client.post(path, content=hook.body, headers=dict(hook.headers))
    ).status_code == 204
    reordered = "&".join(reversed(hook.body.decode().split("&"))).encode()
    answer = await api.client.post(path, content=reordered, headers=dict(hook.headers))
    assert answer.status_code == 403, answer.text


def _flip_unused_bit(signature: str) -> str:
    """The same 64 bytes in other base64: the last data character's unused low bits changed."""
    stripped = signature.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(stripped[-1]) ^ 1]
    flipped = stripped[:-1] + last + "=" * (len(signature) - len(stripped))
    assert base64.b64decode(flipped) == base64.b64decode(signature) and flipped != signature
    return flipped


async def test_telnyx_replay_with_a_flipped_unused_base64_bit_is_refused(api: Api) -> None:
    """Telnyx's signature re-encoded with another unused base64 bit is the same webhook: 403."""
    event = {
        "data": {
            "event_type": "message.finalized",
            "occurred_at": "2026-03-01T12:00:00+00:00",
            "payload": {"id": "tx-1", "to": [{"status": "delivered"}], "parts": 1},
        }
    }
    hook = signed_event(json.dumps(event).encode(), TELNYX_KEY, time.time())
    headers = dict(hook.headers)
    assert (
        await api.client.post("/v1/receipts/telnyx", content=hook.body, headers=headers)
    ).status_code == 204
    headers["telnyx-signature-ed25519"] = _flip_unused_bit(headers["telnyx-signature-ed25519"])
    answer = await api.client.post("/v1/receipts/telnyx", content=hook.body, headers=headers)
    assert answer.status_code == 403, answer.text


def _vonage_dlr(message_id: str = "0A01", **extra: str) -> dict[str, str]:
    """A signed Vonage DLR's parameters (``sig`` in Vonage's upper-case hex)."""
    params = {
        **vonage_fake.dlr(message_id, **extra),
        "timestamp": str(int(time.time())),
        "nonce": secrets.token_hex(8),
    }
    params["sig"] = vonage_fake.sign(params, vonage_fake.SIGNATURE_SECRET)
    return params


@pytest.mark.parametrize("replay", ["post-form", "post-json", "lower-case-sig"])
async def test_vonage_get_receipt_replayed_otherwise_is_refused(api: Api, replay: str) -> None:
    """A GET DLR replayed as a POST form, as JSON, or with `sig` in lower case: 403."""
    params = _vonage_dlr()
    assert (await api.client.get("/v1/receipts/vonage", params=params)).status_code == 204
    if replay == "lower-case-sig":
        again = await api.client.get(
            "/v1/receipts/vonage", params={**params, "sig": params["sig"].lower()}
        )
    elif replay == "post-form":
        again = await api.client.post("/v1/receipts/vonage", data=params)
    else:
        again = await api.client.post("/v1/receipts/vonage", json=params)
    assert again.status_code == 403, again.text


async def test_two_vonage_posts_with_the_query_and_no_body_are_both_taken(api: Api) -> None:
    """Two different DLRs POSTed with an empty body and their parameters in the query: both 204."""
    for message_id in ("0A01", "0A02"):
        params = _vonage_dlr(message_id)
        answer = await api.client.post("/v1/receipts/vonage", params=params)
        assert answer.status_code == 204, answer.text


async def test_vonage_deeply_nested_json_is_400_and_counted(api: Api) -> None:
    """Unsigned JSON nested 20,000 deep: 400 (not 500), counted as a refusal."""
    body = b'{"a":' * 20000 + b"1" + b"}" * 20000
    answer = await api.client.post(
        "/v1/receipts/vonage", content=body[:16000], headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    deep = b"[" * 15000
    answer = await api.client.post(
        "/v1/receipts/vonage", content=deep, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert (
        await api.metric("smsrelay_receipt_refusals_total", provider="vonage", reason="malformed")
        == 2
    )
