"""SIGKILL after SIGKILL during recovery: every message that may have gone out twice is flagged."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path

import yaml
from sqlalchemy import text

from smsrelay.store import SqlStore
from tests.integration.harness import publish_raw
from tests.integration.process import WorkerProcess

COUNT = 600
KILLS_DURING_RECOVERY = 3


async def _final_records(db: str, ids: list[str], seconds: float = 120) -> dict[str, bool]:
    """id → possible_duplicate, once every id is recorded as sent."""
    store = SqlStore.from_url(db)
    try:
        deadline = time.monotonic() + seconds
        while True:
            async with store.engine.connect() as conn:
                rows = (
                    await conn.execute(text("SELECT id, state, possible_duplicate FROM messages"))
                ).all()
            sent = {r.id: bool(r.possible_duplicate) for r in rows if r.state == "sent"}
            if set(ids) <= set(sent):
                return sent
            assert time.monotonic() < deadline, f"{len(sent)} of {len(ids)} sent"
            await asyncio.sleep(0.2)
    finally:
        await store.close()


async def test_kills_during_recovery_never_erase_the_duplicate_flag(
    tmp_path: Path, amqp_url: str, sqlite_url: str
) -> None:
    """Three SIGKILLs, each as the restarted worker interrupts open attempts: 0 unflagged re-sends."""
    worker = WorkerProcess(tmp_path, amqp_url, sqlite_url, latency_ms=200)
    # The provider has each message from the moment it is asked, as a real one does.
    config = yaml.safe_load(worker.config.read_text())
    config["providers"]["simulator"]["accept_on_arrival"] = True
    worker.config.write_text(yaml.safe_dump(config))
    prefix = f"kills-{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{i}" for i in range(COUNT)]
    bodies = [
        json.dumps({"id": mid, "to": f"+1415555{i % 100:04d}", "body": f"note {i}"}).encode()
        for i, mid in enumerate(ids)
    ]
    try:
        worker.start()
        await publish_raw(amqp_url, bodies)
        await asyncio.to_thread(worker.wait_for_log, '"message_sent"')
        worker.signal(signal.SIGKILL)
        for _ in range(KILLS_DURING_RECOVERY):
            worker.start()
            # Recovery has begun: this worker is closing attempts the last one left open.
            await asyncio.to_thread(worker.wait_for_log, '"possible_duplicate"')
            worker.signal(signal.SIGKILL)
        worker.start()
        flagged = await _final_records(sqlite_url, ids)
    finally:
        worker.stop()
    sends = worker.sends()
    assert set(sends) == set(ids)
    twice = sorted(i for i, n in sends.items() if n > 1)
    assert twice, "no message was sent twice: the kills landed nowhere"
    unflagged = [i for i in twice if not flagged[i]]
    assert unflagged == [], f"{len(unflagged)} of {len(twice)} re-sent messages are unflagged"
