"""`smsrelay resend`: a failed message is sent again under its id, and the record says so."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from smsrelay.client import AsyncClient
from smsrelay.resend import parse_duration
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.migrate import alembic_config
from tests.conftest import eventually
from tests.integration.harness import running_worker
from tests.integration.test_cli import smsrelay

DOWN = "+14155550199"


@pytest.fixture
def env(amqp_url: str, sqlite_url: str) -> dict[str, str]:
    """The test's vhost and SQLite file."""
    return {"SMSRELAY_AMQP_URL": amqp_url, "SMSRELAY_DATABASE_URL": sqlite_url}


async def state(sqlite_url: str, message_id: str) -> str | None:
    """The message's state in the store (None: no record)."""
    store = SqlStore.from_url(sqlite_url)
    try:
        record = await store.get(message_id)
    finally:
        await store.close()
    return record.state.value if record else None


async def fail_one(
    amqp_url: str, sqlite_url: str, message_id: str, kind: str = "transactional"
) -> None:
    """Send ``message_id`` through a worker whose only provider is down for its number: it ends failed."""
    providers = {"simulator": {"type": "simulator", "transient_failure_numbers": [DOWN]}}
    async with running_worker(
        amqp_url, sqlite_url, providers=providers, retry={"max_attempts": 1, "delays": [0.1]}
    ):
        async with AsyncClient(amqp_url) as client:
            await client.send(id=message_id, to=DOWN, body="hello", kind=kind)
        await eventually(lambda: _is(sqlite_url, message_id, "failed"))


async def _is(sqlite_url: str, message_id: str, expected: str) -> bool:
    return await state(sqlite_url, message_id) == expected


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The real command line, off the event loop."""
    done = await asyncio.to_thread(smsrelay, *args, env=env, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


async def test_resend_sends_a_failed_message_again_under_its_id(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Once the provider is back, `resend ID` makes the failed message sent; status shows the new attempt and `resent 1x`."""
    await fail_one(amqp_url, sqlite_url, "rs-1")
    code, out, err = await cli("resend", "rs-1", env=env, cwd=tmp_path)
    assert code == 0 and out.strip() == "resent rs-1", err
    async with running_worker(amqp_url, sqlite_url):
        await eventually(lambda: _is(sqlite_url, "rs-1", "sent"))
    code, out, _ = await cli("status", "rs-1", env=env, cwd=tmp_path)
    assert "state     sent  (resent 1x)" in out
    assert [line.split()[0] for line in out.splitlines() if line[:3].strip().isdigit()] == [
        "1",
        "2",
    ]


async def test_failed_since_resends_recent_failures_only_once(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`resend --failed-since 1h` picks failed messages; a second run finds nothing failed to resend."""
    await fail_one(amqp_url, sqlite_url, "rs-2")
    code, out, _ = await cli("resend", "--failed-since", "1h", env=env, cwd=tmp_path)
    assert code == 0 and out.strip() == "resent rs-2"
    code, out, err = await cli("resend", "--failed-since", "1h", env=env, cwd=tmp_path)
    assert code == 0 and out == "" and "0 resent" in err


async def test_resend_refuses_what_is_not_failed(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Unknown ids, messages not failed and OTPs (text never kept) are named and not resent: exit 1."""
    await fail_one(amqp_url, sqlite_url, "rs-otp", kind="otp")
    async with running_worker(amqp_url, sqlite_url):
        async with AsyncClient(amqp_url) as client:
            await client.send(id="rs-ok", to="+14155550123", body="hi")
        await eventually(lambda: _is(sqlite_url, "rs-ok", "sent"))
    code, out, err = await cli("resend", "nope", "rs-ok", "rs-otp", env=env, cwd=tmp_path)
    assert code == 1 and out == ""
    assert "nope not resent: no message with this id" in err
    assert "rs-ok not resent: it is sent, not failed" in err
    assert "rs-otp not resent: an OTP's text is never kept" in err
    assert await state(sqlite_url, "rs-otp") == "failed"


async def test_resend_needs_ids_or_a_window(env: dict[str, str], tmp_path: Path) -> None:
    """`resend` alone, or with a bad --failed-since, exits 2 saying how to call it."""
    code, _, err = await cli("resend", env=env, cwd=tmp_path)
    assert code == 2 and "--failed-since 1h" in err
    code, _, err = await cli("resend", "--failed-since", "soon", env=env, cwd=tmp_path)
    assert code == 2 and "not a duration" in err


def test_durations() -> None:
    """parse_duration reads s/m/h/d and refuses anything else."""
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("2d").total_seconds() == 172800
    with pytest.raises(ValueError):
        parse_duration("1h30m")


async def test_migration_0007_round_trips_and_reads_older_rows(database_url: str) -> None:
    """0007_resends upgrades, downgrades and upgrades again; a row written at 0006 reads as resends 0."""
    store = SqlStore.from_url(database_url)
    try:
        await upgrade(store.engine, "0006_receipts_outbox")
        # The messages table as version 0006 knew it: no resends column.
        old = sa.table(
            "messages",
            *(sa.column(name) for name in ("id", "to", "country", "kind", "state", "attempts")),
            sa.column("tags", sa.JSON),
            sa.column("possible_duplicate", sa.Boolean),
            sa.column("created_at", sa.DateTime(timezone=True)),
            sa.column("updated_at", sa.DateTime(timezone=True)),
        )
        now = datetime.now(UTC)
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(old).values(
                    id="old-1",
                    to="+14155550123",
                    country="US",
                    kind="transactional",
                    state="failed",
                    attempts=1,
                    tags={},
                    possible_duplicate=False,
                    created_at=now,
                    updated_at=now,
                )
            )
        await upgrade(store.engine, "head")
        record = await store.get("old-1")
        assert record is not None and record.resends == 0
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0006_receipts_outbox"))
        await upgrade(store.engine, "head")
        assert (await store.get("old-1")) is not None
    finally:
        await store.close()
