"""POST /v1/messages and GET /v1/messages/{id}: API keys, the v1 validation, the broker."""

from __future__ import annotations

import uuid

from smsrelay.api import AmqpPublisher
from smsrelay.models import MAX_REQUEST_BYTES, State, validate_request
from smsrelay.store import SqlStore
from tests.api.support import API_KEY, Api, MemoryPublisher, api_settings, auth, running_api
from tests.conftest import eventually
from tests.integration.harness import event_log, running_worker

REQUEST = {"id": "order-1:shipped", "to": "+14155550123", "body": "Your parcel is on its way"}


def published(api: Api) -> list[str]:
    """Ids the app published."""
    assert isinstance(api.publisher, MemoryPublisher)
    return [r.id for r in api.publisher.requests]


async def test_posted_request_reaches_a_running_worker_and_is_sent(
    amqp_url: str, sqlite_url: str
) -> None:
    """202 with the id, then the worker on the same broker sends it: `sent` in the store and on sms.events."""
    mid = f"api-{uuid.uuid4().hex[:8]}"
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url) as rt:
        publisher = AmqpPublisher(amqp_url)
        settings = api_settings(sqlite_url, amqp_url)
        async with running_api(
            settings, rt.store, publisher, dict(rt.providers), rt.metrics
        ) as api:
            await eventually(lambda: publisher.ready)
            answer = await api.client.post(
                "/v1/messages", json={**REQUEST, "id": mid}, headers=auth()
            )
            assert answer.status_code == 202 and answer.json() == {"id": mid}
            await eventually(lambda: events.states(mid) == ["sent"])
            status = await api.client.get(f"/v1/messages/{mid}", headers=auth())
    assert status.json()["state"] == "sent"
    assert [a["outcome"] for a in status.json()["attempts"]] == ["sent"]


async def test_bad_number_is_422_naming_the_field(api: Api) -> None:
    """A number that is not valid for its country is 422 with field "to", and nothing is published."""
    answer = await api.client.post("/v1/messages", json={**REQUEST, "to": "+1415"}, headers=auth())
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "to"
    assert published(api) == []


async def test_unknown_field_is_422_naming_it(api: Api) -> None:
    """A field the v1 contract does not have is refused, as on AMQP, and named."""
    answer = await api.client.post(
        "/v1/messages", json={**REQUEST, "priority": "high"}, headers=auth()
    )
    assert answer.status_code == 422
    assert answer.json()["error"] == {"field": "priority", "reason": 'unknown field "priority"'}


async def test_missing_required_field_is_422_naming_it(api: Api) -> None:
    """A request without a body text names "body"."""
    answer = await api.client.post(
        "/v1/messages", json={"id": "x", "to": "+14155550123"}, headers=auth()
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "body"


async def test_body_that_is_not_json_is_400(api: Api) -> None:
    """Bytes that are not JSON are a 400, not a validation error."""
    answer = await api.client.post("/v1/messages", content=b"{nope", headers=auth())
    assert answer.status_code == 400


async def test_request_over_the_size_limit_is_413(api: Api) -> None:
    """A body over MAX_REQUEST_BYTES is refused unread with 413."""
    big = b'{"body": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
    answer = await api.client.post("/v1/messages", content=big, headers=auth())
    assert answer.status_code == 413


async def test_valid_request_is_published_and_accepted(api: Api) -> None:
    """A valid request is published as validated (E.164 `to`) and answered 202 with its id."""
    answer = await api.client.post(
        "/v1/messages", json={**REQUEST, "to": "(415) 555-0123", "region": "US"}, headers=auth()
    )
    assert answer.status_code == 202 and answer.json() == {"id": REQUEST["id"]}
    assert isinstance(api.publisher, MemoryPublisher)
    assert api.publisher.requests[0].to == "+14155550123"


async def test_x_api_key_header_is_accepted_too(api: Api) -> None:
    """X-Api-Key works as well as Authorization: Bearer."""
    answer = await api.client.post("/v1/messages", json=REQUEST, headers={"X-Api-Key": API_KEY})
    assert answer.status_code == 202


async def test_request_without_a_key_is_401(api: Api) -> None:
    """No key: 401 with WWW-Authenticate, nothing published."""
    answer = await api.client.post("/v1/messages", json=REQUEST)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert published(api) == []


async def test_request_with_a_wrong_key_is_401(api: Api) -> None:
    """A key that is not configured is 401, by either header."""
    assert (
        await api.client.post("/v1/messages", json=REQUEST, headers=auth("nope"))
    ).status_code == 401
    answer = await api.client.post("/v1/messages", json=REQUEST, headers={"X-Api-Key": "nope"})
    assert answer.status_code == 401


async def test_no_configured_key_refuses_everyone(store: SqlStore, sqlite_url: str) -> None:
    """With api_keys empty the message endpoints are closed, not open."""
    async with running_api(api_settings(sqlite_url, api_keys=[]), store, MemoryPublisher()) as api:
        assert (
            await api.client.post("/v1/messages", json=REQUEST, headers=auth(""))
        ).status_code == 401
        assert (await api.client.get("/v1/messages/x", headers=auth())).status_code == 401


async def test_broker_unavailable_is_503(api: Api) -> None:
    """When the broker does not confirm, the request is not accepted: 503 with Retry-After."""
    assert isinstance(api.publisher, MemoryPublisher)
    api.publisher.down = True
    answer = await api.client.post("/v1/messages", json=REQUEST, headers=auth())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"


async def test_get_returns_state_attempts_and_receipts(api: Api, store: SqlStore) -> None:
    """GET shows the state, provider, provider id, segments, the attempts and (empty) receipts."""
    await store.claim(validate_request(REQUEST))
    key = await store.start_attempt(REQUEST["id"], 1, "simulator")
    await store.finish_message(
        REQUEST["id"],
        State.SENT,
        provider="simulator",
        provider_message_id="sim-1",
        segments=2,
        closing_attempt=key,
    )
    answer = await api.client.get(f"/v1/messages/{REQUEST['id']}", headers=auth())
    assert answer.status_code == 200
    body = answer.json()
    assert (body["state"], body["provider"], body["provider_message_id"], body["segments"]) == (
        "sent",
        "simulator",
        "sim-1",
        2,
    )
    assert body["error"] is None and body["possible_duplicate"] is False
    assert [(a["number"], a["provider"], a["outcome"]) for a in body["attempts"]] == [
        (1, "simulator", "sent")
    ]
    assert body["receipts"] == []


async def test_get_unknown_id_is_404(api: Api) -> None:
    """An id the store never saw is 404."""
    answer = await api.client.get("/v1/messages/never-seen", headers=auth())
    assert answer.status_code == 404 and "never-seen" in answer.json()["error"]["reason"]


async def test_get_requires_a_key(api: Api) -> None:
    """Message status is not public."""
    assert (await api.client.get("/v1/messages/x")).status_code == 401
