"""POST /v1/messages keeps its promise: the accepted message is visible at once, and an id means one message."""

from __future__ import annotations

from smsrelay.models import validate_request
from smsrelay.store import SqlStore
from tests.api.support import Api, MemoryPublisher, api_settings, auth, running_api

REQUEST = {"id": "login-42", "to": "+14155550123", "body": "Your parcel is on its way"}


def published(api: Api) -> list[str]:
    """Ids the app published."""
    assert isinstance(api.publisher, MemoryPublisher)
    return [r.id for r in api.publisher.requests]


async def test_get_right_after_202_finds_the_message_accepted(api: Api) -> None:
    """A message answered 202 is never "not found": it reads `accepted`, with no attempt yet."""
    assert (await api.client.post("/v1/messages", json=REQUEST, headers=auth())).status_code == 202
    answer = await api.client.get("/v1/messages/login-42", headers=auth())
    assert answer.status_code == 200
    assert (answer.json()["state"], answer.json()["attempts"]) == ("accepted", [])


async def test_same_id_with_another_request_is_409_naming_the_conflict(api: Api) -> None:
    """A reused id with another body is refused with 409 on field "id", and not published."""
    await api.client.post("/v1/messages", json=REQUEST, headers=auth())
    answer = await api.client.post(
        "/v1/messages", json={**REQUEST, "body": "Another text"}, headers=auth()
    )
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["field"] == "id"
    assert 'id "login-42" was already used for a different request' in error["reason"]
    assert published(api) == ["login-42"]
    assert await api.metric("smsrelay_id_conflicts_total") == 1


async def test_same_request_twice_is_202_twice(api: Api) -> None:
    """Posting the same request again (a client's retry) is accepted again: idempotent."""
    for _ in range(2):
        answer = await api.client.post("/v1/messages", json=REQUEST, headers=auth())
        assert answer.status_code == 202 and answer.json() == {"id": "login-42"}


async def test_same_request_after_a_worker_took_it_is_202_without_publishing(
    api: Api, store: SqlStore
) -> None:
    """Once a worker has the message, a repeat is a duplicate: 202, nothing published again."""
    request = validate_request(REQUEST)
    await store.claim(request, None, request.digest())
    answer = await api.client.post("/v1/messages", json=REQUEST, headers=auth())
    assert answer.status_code == 202
    assert published(api) == []


async def test_reused_id_sent_before_over_amqp_is_409(api: Api, store: SqlStore) -> None:
    """An id a worker recorded for another request is refused by the API too."""
    other = validate_request({**REQUEST, "to": "+14155550124"})
    await store.claim(other, None, other.digest())
    answer = await api.client.post("/v1/messages", json=REQUEST, headers=auth())
    assert answer.status_code == 409


async def test_broker_down_is_503_and_leaves_no_record(store: SqlStore, sqlite_url: str) -> None:
    """A request the broker did not take is not promised: 503, and GET still says 404."""
    async with running_api(api_settings(sqlite_url), store, MemoryPublisher(down=True)) as api:
        answer = await api.client.post("/v1/messages", json=REQUEST, headers=auth())
        assert answer.status_code == 503
        assert (await api.client.get("/v1/messages/login-42", headers=auth())).status_code == 404


async def test_otp_with_a_new_code_under_the_same_id_is_409_with_a_digest_key(
    store: SqlStore, sqlite_url: str
) -> None:
    """With digest_key set, the next OTP under `login-<user>` is refused rather than lost."""
    settings = api_settings(sqlite_url, digest_key="k-digest")
    otp = {**REQUEST, "kind": "otp", "body": "Your code is 111111"}
    async with running_api(settings, store, MemoryPublisher()) as api:
        assert (await api.client.post("/v1/messages", json=otp, headers=auth())).status_code == 202
        answer = await api.client.post(
            "/v1/messages", json={**otp, "body": "Your code is 222222"}, headers=auth()
        )
    assert answer.status_code == 409
