"""End to end through the real broker, worker and store: a code is in no log line, event or row."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import select

from smsrelay.api import AmqpPublisher
from smsrelay.logging import configure
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.schema import metadata
from tests.api.support import auth, running_api
from tests.conftest import eventually
from tests.integration.harness import event_log, running_worker, simulator
from tests.otp.conftest import otp_settings


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """Undo configure(), so later tests do not write to this test's captured stderr."""
    yield
    structlog.reset_defaults()


async def test_code_is_in_no_log_event_or_row(
    restore_structlog: None, amqp_url: str, sqlite_url: str
) -> None:
    """A verification sent by a worker and checked: the code never shows outside the SMS."""
    configure("json", "debug")
    # Into a buffer of the test's own, and uncached: a logger cached now would keep
    # writing here in later tests of this process.
    lines = io.StringIO()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=lines), cache_logger_on_first_use=False
    )
    store = SqlStore.from_url(sqlite_url)
    await upgrade(store.engine)
    publisher = AmqpPublisher(amqp_url)
    settings = otp_settings(sqlite_url)
    try:
        async with (
            event_log(amqp_url) as events,
            running_worker(amqp_url, sqlite_url) as worker,
            running_api(settings, store, publisher) as api,
        ):
            await eventually(lambda: publisher.ready)
            started = await api.client.post(
                "/v1/verifications", json={"to": "+14155550123", "code_length": 10}, headers=auth()
            )
            assert started.status_code == 201, started.text
            vid, mid = started.json()["id"], started.json()["message_id"]
            await eventually(lambda: events.states(mid) == ["sent"])
            [sms] = simulator(worker, "simulator").sent
            match = re.search(r"\d{10}", sms.body)
            assert match is not None
            code = match.group(0)
            wrong = await api.client.post(
                f"/v1/verifications/{vid}/check", json={"code": "0" * 10}, headers=auth()
            )
            right = await api.client.post(
                f"/v1/verifications/{vid}/check", json={"code": code}, headers=auth()
            )
            assert (wrong.json()["status"], right.json()["status"]) == ("denied", "approved")
        rows = []
        async with store.engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows += [repr(tuple(r)) for r in (await conn.execute(select(table))).all()]
    finally:
        await store.close()
    logged = lines.getvalue()
    assert "verification_started" in logged and "message_sent" in logged
    assert code not in logged
    assert code not in json.dumps(events.events)
    assert rows and not any(code in row for row in rows)
