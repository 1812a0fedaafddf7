"""route explain (CLI and HTTP) prints the plan the worker follows; report costs sums attempts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from smsrelay.economics.report import parse_by, parse_since, to_csv
from smsrelay.encoding import encode
from smsrelay.models import State, validate_request
from smsrelay.routing.configured import configured_router, explain_request
from smsrelay.store import AttemptBill, SqlStore, upgrade
from smsrelay.store.costs import CostStore
from tests.api.support import MemoryPublisher, api_settings, auth, running_api

GUERNSEY = "+447911123456"
PRICES = {
    "providers": {
        "simulator": {"currency": "USD", "destinations": {"GB": "0.04", "GG": "0.05"}},
        "cheap": {"currency": "USD", "destinations": {"+44": "0.03"}},
    }
}
ROUTES = {"*": ["simulator"], "+44": {"strategy": "cheapest", "providers": ["simulator", "cheap"]}}


def smsrelay(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process (its logging set-up stays out of this one)."""
    return subprocess.run(
        [sys.executable, "-m", "smsrelay", *args], capture_output=True, text=True, timeout=60
    )


def config(tmp_path: Path, database_url: str) -> Path:
    """A YAML config with a cheapest +44 route over two priced simulators."""
    path = tmp_path / "smsrelay.yaml"
    path.write_text(
        json.dumps(
            {
                "database_url": database_url,
                "providers": {"simulator": {"type": "simulator"}, "cheap": {"type": "simulator"}},
                "routes": ROUTES,
                "prices": PRICES,
            }
        )
    )
    return path


def test_cli_explain_shows_country_reason_route_and_order(tmp_path: Path) -> None:
    """route explain --json: GG and why, the +44 route, cheapest first, every candidate."""
    path = config(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    result = smsrelay("route", "explain", "--to", GUERNSEY, "--json", "-c", str(path))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["country"] == "GG" and "GB, GG, IM, JE" in plan["country_reason"]
    assert plan["route"] == {
        "key": "+44",
        "kind": "prefix",
        "why": "longest matching prefix +44",
        "strategy": "cheapest",
    }
    assert plan["order"] == ["cheap", "simulator"]
    assert [c["estimated_cost"] for c in plan["candidates"]] == ["0.03", "0.05"]
    table = smsrelay("route", "explain", "--to", GUERNSEY, "-c", str(path))
    assert "cost rank 1" in table.stdout and table.returncode == 0


def test_cli_explain_refuses_a_bad_number(tmp_path: Path) -> None:
    """An invalid number is exit 2 with the reason, not a traceback."""
    path = config(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    result = smsrelay("route", "explain", "--to", "+44", "-c", str(path))
    assert result.returncode == 2 and '"to"' in result.stderr and "Traceback" not in result.stderr


async def test_http_explain_is_the_same_plan(sqlite_url: str) -> None:
    """GET /v1/routes/explain answers the plan the configured router makes (one code path)."""
    settings = api_settings(
        sqlite_url,
        providers={"simulator": {"type": "simulator"}, "cheap": {"type": "simulator"}},
        routes=ROUTES,
        prices=PRICES,
    )
    store = SqlStore.from_url(sqlite_url)
    await upgrade(store.engine)
    try:
        async with running_api(settings, store, MemoryPublisher()) as api:
            answer = await api.client.get(
                "/v1/routes/explain", params={"to": GUERNSEY, "body": "hi"}, headers=auth()
            )
            assert answer.status_code == 200
            direct = configured_router(settings, None).plan(explain_request(GUERNSEY, "hi"))
            assert answer.json()["route"]["strategy"] == "cheapest"
            assert [c["provider"] for c in answer.json()["candidates"]] == ["cheap", "simulator"]
            assert direct.match.rule.key == answer.json()["route"]["key"]
            bad = await api.client.get("/v1/routes/explain", params={"to": "nope"}, headers=auth())
            assert bad.status_code == 422
            unauthorised = await api.client.get("/v1/routes/explain", params={"to": GUERNSEY})
            assert unauthorised.status_code == 401
    finally:
        await store.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on SQLite and PostgreSQL."""
    store = SqlStore.from_url(database_url)
    await upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def sent(
    store: SqlStore, message_id: str, provider: str, to: str, cost: str, state: State
) -> None:
    """A message sent by ``provider`` at estimated ``cost`` (2 parts), then in ``state``."""
    request = validate_request({"id": message_id, "to": to, "body": "x" * 200})
    claim = await store.claim(request, provider)
    bill = AttemptBill(encode(request.body), Decimal(cost), "USD", Decimal(cost) * 2, "USD")
    await store.finish_message(
        message_id,
        State.SENT,
        provider=provider,
        provider_message_id=f"p-{message_id}",
        closing_attempt=claim.first_attempt,
        bill=bill,
    )
    if state is not State.SENT:
        await store.finish_message(message_id, state, provider=provider)


async def test_costs_report_sums_by_provider_and_country(store: SqlStore) -> None:
    """Messages, parts, delivered and costs per provider and country; cost per delivered."""
    await sent(store, "m-1", "a", "+442071838750", "0.08", State.DELIVERED)
    await sent(store, "m-2", "a", "+442071838751", "0.08", State.UNDELIVERED)
    await sent(store, "m-3", "b", "+14155550123", "0.016", State.DELIVERED)
    rows = await CostStore(store.engine).report(parse_since("1d"), parse_by("provider,country"))
    by_key = {(r.provider, r.country): r for r in rows}
    gb = by_key[("a", "GB")]
    assert (gb.messages, gb.parts, gb.delivered, gb.currency) == (2, 4, 1, "USD")
    assert (gb.estimated_cost, gb.actual_cost, gb.cost_per_delivered) == (0.16, 0.32, 0.16)
    assert by_key[("b", "US")].estimated_cost == 0.016
    (total,) = await CostStore(store.engine).report(parse_since("1d"), ())
    assert (total.messages, total.delivered) == (3, 2)
    assert to_csv(rows).splitlines()[0].startswith("provider,country,currency,messages")
    assert await CostStore(store.engine).report(parse_since("2099-01-01"), ()) == []


def test_cli_report_costs_formats(tmp_path: Path) -> None:
    """report costs prints table, csv and json; a bad --since is exit 2."""
    path = config(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    for fmt, start in (("table", "provider"), ("csv", "provider,"), ("json", "[")):
        result = smsrelay("report", "costs", "--format", fmt, "-c", str(path))
        assert result.returncode == 0 and result.stdout.startswith(start), result.stderr
    assert smsrelay("report", "costs", "--since", "x", "-c", str(path)).returncode == 2


async def test_costs_report_over_http(sqlite_url: str) -> None:
    """GET /v1/reports/costs answers the same rows; a bad --since is 422."""
    store = SqlStore.from_url(sqlite_url)
    await upgrade(store.engine)
    try:
        await sent(store, "m-1", "simulator", "+442071838750", "0.04", State.DELIVERED)
        async with running_api(api_settings(sqlite_url), store, MemoryPublisher()) as api:
            answer = await api.client.get(
                "/v1/reports/costs", params={"since": "7d", "by": "provider"}, headers=auth()
            )
            assert answer.status_code == 200
            (row,) = answer.json()
            assert (row["provider"], row["messages"], row["cost_per_delivered"]) == (
                "simulator",
                1,
                0.04,
            )
            bad = await api.client.get(
                "/v1/reports/costs", params={"since": "forever"}, headers=auth()
            )
            assert bad.status_code == 422
    finally:
        await store.close()
