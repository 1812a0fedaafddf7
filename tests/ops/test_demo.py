"""`smsrelay demo` keeps to itself: its own vhost or none shared, full ids, and no silent gaps."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from smsrelay import demo
from smsrelay import settings as config
from smsrelay.demo import report
from tests.conftest import AMQP_HOST
from tests.integration.test_cli import smsrelay


async def test_demo_refuses_to_start_beside_another_consumer(amqp_url: str, tmp_path: Path) -> None:
    """With another consumer on sms.send in its vhost, the demo exits 2 saying why, and sends nothing."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            "sms.send",
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "sms.dlx",
                "x-delivery-limit": 50,
            },
        )

        async def hold(message: AbstractIncomingMessage) -> None:
            """Another worker: takes messages and keeps them."""

        await queue.consume(hold)
        done = await asyncio.to_thread(
            smsrelay, "demo", env={"SMSRELAY_AMQP_URL": amqp_url}, cwd=tmp_path
        )
    assert done.returncode == 2, done.stderr
    assert "1 consumer(s) already on sms.send" in done.stderr
    assert "send real SMS" in done.stderr
    assert not (tmp_path / "smsrelay-demo.db").exists()


def test_demo_prints_full_ids_the_database_and_where_to_look(amqp_url: str, tmp_path: Path) -> None:
    """A demo run ends 0 with every outcome, the full ids, the database path and pasteable commands."""
    done = smsrelay("demo", env={"SMSRELAY_AMQP_URL": amqp_url}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    database = tmp_path / "smsrelay-demo.db"
    assert f"database  {database}" in done.stdout
    lines = done.stdout.splitlines()
    states = {
        line.split()[0].rsplit("-", 1)[1]: line.split()[1]
        for line in lines
        if line.startswith("demo-")
    }
    assert states == {
        "welcome": "sent",
        "otp": "sent",
        "failover": "sent",
        "rejected": "failed",
        "expired": "expired",
        "bad": "rejected",
    }
    welcome = next(
        line.split()[0] for line in lines if line.endswith("simulator:sent") or "-welcome " in line
    )
    status_hint = f"SMSRELAY_DATABASE_URL=sqlite+aiosqlite:///{database} smsrelay status {welcome}"
    assert status_hint in done.stdout
    shown = smsrelay(
        "status",
        welcome,
        env={"SMSRELAY_DATABASE_URL": f"sqlite+aiosqlite:///{database}"},
        cwd=tmp_path,
    )
    assert shown.returncode == 0 and "state     sent" in shown.stdout


def test_an_outcome_the_demo_could_not_observe_is_explained() -> None:
    """A message with no record, or not final, gets a line saying so and why it may be, and fails the run."""
    settings = config.load(database_url="sqlite+aiosqlite:///demo.db")
    lines, observed = report(["demo-1-a", "demo-1-b"], [None, None], "demo-1-bad", settings)
    assert not observed
    text = "\n".join(lines)
    assert "not observed: demo-1-a has no record after 30 s" in text
    assert "another consumer on sms.send may have taken it" in text


def test_demo_moves_off_the_default_vhost_to_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the default vhost the demo creates and uses its own; a URL naming a vhost is kept."""
    name = f"smsrelay-demo-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(demo, "DEMO_VHOST", name)
    assert (
        demo.own_vhost(f"amqp://guest:guest@{AMQP_HOST}/other")
        == f"amqp://guest:guest@{AMQP_HOST}/other"
    )
    try:
        moved = demo.own_vhost(f"amqp://guest:guest@{AMQP_HOST}/")
        assert moved == f"amqp://guest:guest@{AMQP_HOST}/{name}"
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True
        )
        assert name in listed.stdout.split()
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True)


def test_demo_with_an_unusable_environment_says_which_key(tmp_path: Path) -> None:
    """An SMSRELAY_* variable the demo cannot use stops it with exit 2 naming the key, no traceback."""
    done = smsrelay("demo", env={"SMSRELAY_PREFETCH": "0"}, cwd=tmp_path)
    assert done.returncode == 2 and "error: config prefetch:" in done.stderr
    assert "Traceback" not in done.stderr
