"""The delivery health report from the store (SQLite and PostgreSQL), the CLI and the HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from smsrelay.health.report import KeyHealth, WindowFigures, build_report, to_table, windows_since
from smsrelay.health.report_metrics import DeliveryGauges
from smsrelay.models import EventError, Receipt, ReceiptStatus, State, validate_request
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.health import HealthReads
from smsrelay.store.receipts import ReceiptStore
from smsrelay.store.schema import attempts, messages
from tests.api.support import MemoryPublisher, api_settings, auth, running_api

GB, US = "+447400123453", "+14155550123"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore.from_url(database_url)
    await upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def _send(
    store: SqlStore,
    to: str,
    provider: str,
    receipt: ReceiptStatus | None = None,
    code: str | None = None,
) -> str:
    """A message sent by ``provider`` and, with ``receipt``, its final receipt; returns its id."""
    mid, pmid = f"m-{uuid.uuid4().hex[:8]}", f"pm-{uuid.uuid4().hex[:8]}"
    claim = await store.claim(validate_request({"id": mid, "to": to, "body": "hi"}), provider)
    await store.finish_message(
        mid, State.SENT, provider=provider, provider_message_id=pmid,
        closing_attempt=claim.first_attempt,
    )  # fmt: skip
    if receipt is not None:
        r = Receipt(
            provider_message_id=pmid, status=receipt, provider_status=receipt.value, error_code=code
        )
        await ReceiptStore(store).accept(provider, uuid.uuid4().hex, [r], datetime.now(UTC))
    return mid


async def _failed_attempt(store: SqlStore, to: str, provider: str, code: str) -> None:
    """An attempt the provider failed transiently, then the message sent elsewhere."""
    mid = f"f-{uuid.uuid4().hex[:8]}"
    claim = await store.claim(validate_request({"id": mid, "to": to, "body": "hi"}), provider)
    assert claim.first_attempt is not None
    event_error = EventError(code=f"{provider}:{code}", message="down", retryable=True)
    await store.finish_attempt(claim.first_attempt, "transient", error=event_error)


async def _age(store: SqlStore, mid: str, hours: float) -> None:
    """Move a message's send back in time."""
    then = datetime.now(UTC) - timedelta(hours=hours)
    async with store.transaction() as conn:
        await conn.execute(update(messages).where(messages.c.id == mid).values(updated_at=then))
        await conn.execute(
            update(attempts).where(attempts.c.message_id == mid).values(finished_at=then)
        )


async def test_report_counts_per_provider_country_and_window(db: SqlStore) -> None:
    """Sent, delivered, undelivered, rate, codes and latency per key; an older send only in 24h."""
    for _ in range(3):
        await _send(db, GB, "a", ReceiptStatus.DELIVERED)
    await _send(db, GB, "a", ReceiptStatus.UNDELIVERED, code="30005")
    await _send(db, GB, "a")  # no receipt yet
    old = await _send(db, GB, "a", ReceiptStatus.DELIVERED)
    await _age(db, old, hours=2)
    await _send(db, US, "b", ReceiptStatus.DELIVERED)
    await _failed_attempt(db, US, "b", "503")
    now = datetime.now(UTC)
    rows = await build_report(HealthReads(db), windows_since(None, now))
    by_key = {(r.provider, r.country): r for r in rows}
    assert set(by_key) == {("a", "GB"), ("b", "US")}
    hour = by_key["a", "GB"].windows["1h"].as_dict()
    assert (hour["sent"], hour["delivered"], hour["undelivered"], hour["pending"]) == (5, 3, 1, 1)
    assert hour["delivery_rate"] == 0.75
    assert hour["top_failure_codes"] == [{"code": "a:30005", "count": 1}]
    assert hour["latency_p50"] is not None and hour["latency_p50"] <= 60
    day = by_key["a", "GB"].windows["24h"].as_dict()
    assert (day["sent"], day["delivered"]) == (6, 4)
    us = by_key["b", "US"].windows["5m"].as_dict()
    assert (us["sent"], us["send_failures"], us["delivery_rate"]) == (1, 1, 1.0)
    assert us["top_failure_codes"] == [{"code": "b:503", "count": 1}]
    only = await build_report(HealthReads(db), windows_since("1h", now), country="US")
    assert [(r.provider, r.country, list(r.windows)) for r in only] == [("b", "US", ["1h"])]
    assert "a  " in to_table(rows).splitlines()[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsrelay", *args], capture_output=True, text=True, timeout=60
    )


async def test_cli_health_table_json_and_errors(tmp_path: Path, store: SqlStore) -> None:
    """`smsrelay health` prints a table or JSON; a bad --since or --country is exit 2 with one line."""
    await _send(store, GB, "a", ReceiptStatus.DELIVERED)
    config = tmp_path / "smsrelay.yaml"
    config.write_text(json.dumps({"database_url": str(store.engine.url)}))
    table = _cli("health", "-c", str(config))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("provider") and "100.0%" in table.stdout
    doc = json.loads(_cli("health", "--json", "--since", "1h", "-c", str(config)).stdout)
    (row,) = doc["rows"]
    assert (row["provider"], row["country"], row["windows"]["1h"]["delivered"]) == ("a", "GB", 1)
    bad = _cli("health", "--since", "forever", "-c", str(config))
    assert bad.returncode == 2 and bad.stderr.startswith("error: --since")
    assert _cli("health", "--country", "GBR", "-c", str(config)).returncode == 2


async def test_delivery_health_over_http(store: SqlStore, sqlite_url: str) -> None:
    """GET /v1/health/delivery answers the report; it needs the API key; a bad since is 422."""
    await _send(store, GB, "a", ReceiptStatus.UNDELIVERED, code="30003")
    async with running_api(api_settings(sqlite_url), store, MemoryPublisher()) as api:
        answer = await api.client.get(
            "/v1/health/delivery", params={"country": "gb"}, headers=auth()
        )
        assert answer.status_code == 200
        (row,) = answer.json()["rows"]
        assert row["windows"]["5m"]["undelivered"] == 1 and row["breaker"] is None
        assert row["windows"]["5m"]["delivery_rate"] == 0.0
        assert (await api.client.get("/v1/health/delivery")).status_code == 401
        bad = await api.client.get("/v1/health/delivery", params={"since": "x"}, headers=auth())
        assert bad.status_code == 422


def _row(provider: str, country: str, sent: int, delivered: int) -> KeyHealth:
    figures = WindowFigures(sent=sent, delivered=delivered, undelivered=sent - delivered)
    return KeyHealth(provider, country, {"1h": figures})


def test_gauges_keep_the_busiest_keys_and_sum_the_rest_into_other() -> None:
    """With a cap of 2 keys, the two busiest keep their series, the rest become one `other` series; stale series go."""
    registry = CollectorRegistry()
    gauges = DeliveryGauges(registry, max_keys=2)
    rows = [_row("a", "GB", 100, 90), _row("b", "GB", 50, 25), _row("a", "FR", 3, 3)]
    rows.append(_row("c", "IN", 7, 1))
    gauges.refresh(rows)

    def sample(name: str, provider: str, country: str) -> float | None:
        labels = {"provider": provider, "country": country, "window": "1h"}
        return registry.get_sample_value(name, labels)

    assert sample("smsrelay_delivery_sent", "a", "GB") == 100
    assert sample("smsrelay_delivery_rate", "b", "GB") == 0.5
    assert sample("smsrelay_delivery_sent", "other", "other") == 10
    assert sample("smsrelay_delivery_rate", "other", "other") == 0.4
    assert sample("smsrelay_delivery_sent", "c", "IN") is None
    gauges.refresh(rows[:1])
    assert sample("smsrelay_delivery_sent", "b", "GB") is None
    assert sample("smsrelay_delivery_sent", "other", "other") is None
