"""The store refusing a message: dead-lettered at once with a reason; no log line ever holds its values.

A real worker process on PostgreSQL. The database is made to refuse in ways the
request validation cannot foresee: a CHECK constraint (permanent: SQLSTATE 23514) and
a trigger whose error quotes the body (not a data error: the message is retried).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy import text

import smsrelay.store
from smsrelay.store import SqlStore
from tests.conftest import eventually
from tests.integration.harness import drain_dead, event_log, publish_raw
from tests.integration.process import WorkerProcess

NUMBER = "+14155550166"
POISON = "poison secret-body-8812"
HELD = "hold secret-body-9931"
GOOD = "good secret-body-4410"


async def _sql(db: str, *statements: str) -> None:
    store = SqlStore.from_url(db)
    try:
        async with store.engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await store.close()


async def test_store_refusal_dead_letters_at_once_and_logs_no_value(
    tmp_path: Path, amqp_url: str, pg_url: str
) -> None:
    """CHECK violation: one delivery, dead letter with reason, `rejected`; a quoting trigger: retried; logs hold neither body nor number."""
    store = SqlStore.from_url(pg_url)
    await smsrelay.store.upgrade(store.engine)
    await store.close()
    await _sql(
        pg_url,
        "ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (body NOT LIKE 'poison%')",
        "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.body LIKE 'hold%' THEN RAISE EXCEPTION 'cannot take % to %', NEW.body, NEW.to;"
        " END IF; RETURN NEW; END $$",
        "CREATE TRIGGER hold BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION hold()",
    )
    prefix = uuid.uuid4().hex[:6]
    ids = {body: f"{prefix}-{body.split()[0]}" for body in (POISON, HELD, GOOD)}
    worker = WorkerProcess(tmp_path, amqp_url, pg_url)
    try:
        async with event_log(amqp_url) as events:
            worker.start()
            await publish_raw(
                amqp_url,
                [json.dumps({"id": i, "to": NUMBER, "body": b}).encode() for b, i in ids.items()],
            )
            await eventually(lambda: events.states(ids[GOOD]) == ["sent"], seconds=30)
            await eventually(lambda: events.states(ids[POISON]) == ["rejected"], seconds=30)
            # The held message fails twice (the store may recover), then the trigger goes.
            await eventually(lambda: worker.logs().count('"delivery_failed"') >= 2, seconds=30)
            await _sql(pg_url, "DROP TRIGGER hold ON messages")
            await eventually(lambda: events.states(ids[HELD]) == ["sent"], seconds=30)
        dead = await drain_dead(amqp_url)
    finally:
        worker.stop()
    [letter] = dead
    assert json.loads(letter.body)["id"] == ids[POISON]
    reason = str((letter.headers or {})["x-smsrelay-reason"])
    assert "SQLSTATE 23514" in reason
    [rejected] = events.of(ids[POISON])
    assert rejected["error"]["code"] == "store-rejected"
    lines = worker.log_lines()
    assert [x["id"] for x in lines if x["event"] == "store_rejected"] == [ids[POISON]]
    logs = worker.logs()
    for secret in ("secret-body", NUMBER, NUMBER[1:]):
        assert secret not in logs
