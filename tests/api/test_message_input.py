"""Hostile input to /v1/messages: control characters, deep JSON, ids that cannot exist."""

from __future__ import annotations

import pytest

from smsrelay.store import SqlStore, upgrade
from tests.api.support import Api, MemoryPublisher, api_settings, auth, running_api

REQUEST = {"id": "order-1:shipped", "to": "+14155550123", "body": "Your parcel is on its way"}


def published(api: Api) -> list[str]:
    """Ids the app published."""
    assert isinstance(api.publisher, MemoryPublisher)
    return [r.id for r in api.publisher.requests]


@pytest.mark.parametrize("field", ["body", "from"])
async def test_nul_in_a_text_field_is_422_naming_the_field(api: Api, field: str) -> None:
    """A NUL in body or from is refused before publishing, naming the field, not accepted (202)."""
    answer = await api.client.post(
        "/v1/messages", json={**REQUEST, field: "AC\u0000ME"}, headers=auth()
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field
    assert "U+0000" in answer.json()["error"]["reason"]
    assert published(api) == []


async def test_deeply_nested_json_is_400_not_500(api: Api) -> None:
    """20 000 nested arrays are refused as bad JSON (400), with nothing published."""
    answer = await api.client.post("/v1/messages", content=b"[" * 20_000, headers=auth())
    assert answer.status_code == 400
    assert "nested too deeply" in answer.json()["error"]["reason"]
    assert published(api) == []


async def test_deeply_nested_json_inside_an_object_is_400(api: Api) -> None:
    """Deep nesting inside a field's value is refused the same way."""
    raw = b'{"id":"x","to":"+14155550123","body":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    answer = await api.client.post("/v1/messages", content=raw, headers=auth())
    assert answer.status_code in (400, 413)
    assert published(api) == []


@pytest.mark.parametrize("path", ["%00", "a%00b", "x" * 65, "%E2%82%AC"])
async def test_get_of_an_id_that_cannot_exist_is_422_naming_it(api: Api, path: str) -> None:
    """An id outside the id pattern is refused before the store is asked (422, never 500)."""
    answer = await api.client.get(f"/v1/messages/{path}", headers=auth())
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "message_id"


async def test_get_of_a_nul_id_on_postgresql_is_not_a_500(pg_url: str) -> None:
    """On PostgreSQL, which refuses a NUL in a query, GET /v1/messages/%00 is still a 4xx."""
    store = SqlStore.from_url(pg_url)
    await upgrade(store.engine)
    try:
        async with running_api(api_settings(pg_url), store, MemoryPublisher()) as api:
            answer = await api.client.get("/v1/messages/%00", headers=auth())
    finally:
        await store.close()
    assert answer.status_code == 422
