"""The smsrelay command: each verb against the test's own vhost and database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import eventually, queue_settled
from tests.integration.harness import event_log, publish_raw, request, running_worker
from tests.integration.process import WorkerProcess


def smsrelay(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "smsrelay", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env(amqp_url: str, sqlite_url: str) -> dict[str, str]:
    """Environment pointing the command at the test's vhost and SQLite file."""
    return {
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": sqlite_url,
        "SMSRELAY_LOG_FORMAT": "json",
    }


async def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(smsrelay, *args, env=env, cwd=cwd)


async def test_send_then_status_shows_the_attempts(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`smsrelay send` publishes; once sent, `smsrelay status ID` prints state and attempts."""
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url):
        sent = await _cli(
            "send", "--to", "+14155550123", "--body", "hi", "--id", "cli-1", env=env, cwd=tmp_path
        )
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == "cli-1"
        await eventually(lambda: events.states("cli-1") == ["sent"])
    shown = await _cli("status", "cli-1", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "state     sent" in shown.stdout
    assert "simulator" in shown.stdout and " sent " in shown.stdout
    assert "+14155550123" not in shown.stdout and "+1415*****23" in shown.stdout


async def test_status_of_an_unknown_id_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    """`smsrelay status` says so and exits 1 for an id it never saw."""
    assert (await _cli("migrate", env=env, cwd=tmp_path)).returncode == 0
    shown = await _cli("status", "nope", env=env, cwd=tmp_path)
    assert shown.returncode == 1 and "no message with id 'nope'" in shown.stderr


async def test_send_refuses_a_bad_number(env: dict[str, str], tmp_path: Path) -> None:
    """`smsrelay send` validates before publishing and exits 2 with the field's error."""
    sent = await _cli("send", "--to", "12", "--body", "hi", env=env, cwd=tmp_path)
    assert sent.returncode == 2
    assert 'field "to": not a valid phone number' in sent.stderr


async def test_dlq_list_and_replay(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`dlq list` shows dead letters with reasons; `dlq replay ID --force` republishes only that invalid one."""
    async with running_worker(amqp_url, sqlite_url):
        await publish_raw(amqp_url, [b'{"id": "dead-1", "to": "+1415", "body": "x"}', b"{oops"])
        await queue_settled(amqp_url)  # both consumed: dead-lettered before the ack
    listed = await _cli("dlq", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "dead-1" in listed.stdout and 'field "to": not a valid phone number' in listed.stdout
    assert "invalid json at line 1 col 2" in listed.stdout
    assert "2 dead-lettered" in listed.stderr
    refused = await _cli("dlq", "replay", "dead-1", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout.strip() == "replayed 0"
    assert "dead-1 not replayed: smsrelay would refuse it again" in refused.stderr
    assert "--force" in refused.stderr
    replayed = await _cli("dlq", "replay", "dead-1", "--force", env=env, cwd=tmp_path)
    assert replayed.returncode == 0 and replayed.stdout.strip() == "replayed 1"
    again = await _cli("dlq", "list", env=env, cwd=tmp_path)
    assert "dead-1" not in again.stdout and "1 dead-lettered" in again.stderr


async def test_migrate_creates_the_schema(env: dict[str, str], tmp_path: Path) -> None:
    """`smsrelay migrate` creates the tables and is safe to run twice."""
    for _ in range(2):
        done = await _cli("migrate", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "latest schema" in done.stdout


async def test_stray_variable_is_warned_about_once_and_ignored(
    env: dict[str, str], tmp_path: Path
) -> None:
    """An SMSRELAY_* variable that names no setting gets one warning line naming it; the verb runs."""
    stray = {**env, "SMSRELAY_OTHER_TOOL_DIR": "/secret-looking-value"}
    done = await _cli("migrate", env=stray, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "SMSRELAY_OTHER_TOOL_DIR" in line]
    assert len(warned) == 1 and json.loads(warned[0])["event"] == "unknown_variable_ignored"
    assert "/secret-looking-value" not in done.stderr


async def test_worker_start_warns_once_per_country_route_with_a_shared_code(
    amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`smsrelay worker` with a GB route logs one route_coverage line naming GG, IM, JE and +44."""
    worker = WorkerProcess(tmp_path, amqp_url, sqlite_url)
    worker.env["SMSRELAY_PROVIDERS__BACKUP__TYPE"] = "simulator"
    worker.env["SMSRELAY_ROUTES"] = json.dumps({"GB": ["backup"], "*": ["simulator"]})
    worker.start()
    try:
        worker.wait_for_log("route_coverage")
        lines = [line for line in worker.log_lines() if line["event"] == "route_coverage"]
    finally:
        assert worker.signal(signal.SIGTERM) == 0
    assert len(lines) == 1 and lines[0]["level"] == "warning"
    assert "GG, IM, JE" in lines[0]["problem"] and "'+44'" in lines[0]["problem"]


async def test_config_error_names_the_key_and_refuses_to_start(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A broken config file stops `smsrelay worker` at once with exit 2 and the offending key."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        json.dumps({"providers": {"tw": {"type": "twilio"}}, "routes": {"*": ["tw"]}})
    )
    started = await _cli("worker", "--config", str(config), env=env, cwd=tmp_path)
    assert started.returncode == 2
    assert "providers.tw.account_sid" in started.stderr
    env_error = await _cli("worker", env={**env, "SMSRELAY_PREFETCH": "0"}, cwd=tmp_path)
    assert env_error.returncode == 2 and "prefetch" in env_error.stderr


async def test_replayed_valid_message_is_sent(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """A dead letter dead-lettered by the broker (not invalid) is sent once replayed."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.declare_exchange("sms.dlx", aio_pika.ExchangeType.FANOUT, durable=True)
        dead = await channel.declare_queue(
            "sms.dead", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(dlx, routing_key="#")
        await dlx.publish(aio_pika.Message(request("poison-1")), routing_key="sms.send")
    replayed = await _cli("dlq", "replay", "--all", env=env, cwd=tmp_path)
    assert replayed.stdout.strip() == "replayed 1"
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url):
        await eventually(lambda: events.states("poison-1") == ["sent"])


async def test_worker_refuses_a_queue_declared_with_other_arguments(
    env: dict[str, str], amqp_url: str, tmp_path: Path
) -> None:
    """An sms.send queue left with other arguments stops the worker with exit 2 and what to do."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_queue("sms.send", durable=True, arguments={"x-queue-type": "quorum"})
    started = await _cli("worker", env=env, cwd=tmp_path)
    assert started.returncode == 2
    assert "config sms.send: the broker has this queue with other arguments" in started.stderr
    assert "drain and delete the queue" in started.stderr


async def _dead_letters(amqp_url: str, sqlite_url: str) -> None:
    """Leave two dead letters: dead-1 (invalid number) and dead-2 (valid, broker-dead-lettered)."""
    async with running_worker(amqp_url, sqlite_url):
        await publish_raw(amqp_url, [b'{"id": "dead-1", "to": "+1415", "body": "x"}'])
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            dlx = await channel.get_exchange("sms.dlx")
            await dlx.publish(aio_pika.Message(request("dead-2")), routing_key="sms.send")
            await eventually(lambda: _depth(channel, 2))


async def _depth(channel: aio_pika.abc.AbstractChannel, expected: int) -> bool:
    queue = await channel.declare_queue("sms.dead", passive=True)
    return queue.declaration_result.message_count == expected


async def test_dlq_unknown_id_is_an_error(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`dlq show|drop|replay` with an id not in sms.dead exit 1 saying so, and touch nothing."""
    await _dead_letters(amqp_url, sqlite_url)
    for verb in ("show", "drop", "replay"):
        done = await _cli("dlq", verb, "nope", env=env, cwd=tmp_path)
        assert done.returncode == 1, (verb, done.stderr)
        assert "no dead letter with id nope" in done.stderr
    listed = await _cli("dlq", "list", env=env, cwd=tmp_path)
    assert "2 dead-lettered" in listed.stderr


async def test_dlq_replay_needs_ids_or_all(env: dict[str, str], tmp_path: Path) -> None:
    """`dlq replay` with neither ids nor --all replays nothing and exits 2 saying how."""
    done = await _cli("dlq", "replay", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "or pass --all" in done.stderr


async def test_dlq_replay_dry_run_changes_nothing(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`dlq replay --all --dry-run` says what it would replay and what it would hold back; the queue is unchanged."""
    await _dead_letters(amqp_url, sqlite_url)
    done = await _cli("dlq", "replay", "--all", "--dry-run", env=env, cwd=tmp_path)
    assert "would replay dead-2" in done.stdout and "would replay 1" in done.stdout
    assert "dead-1 not replayed" in done.stderr
    listed = await _cli("dlq", "list", env=env, cwd=tmp_path)
    assert "2 dead-lettered" in listed.stderr


async def test_dlq_replay_all_holds_back_invalid_requests(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`dlq replay --all` replays the valid one, keeps the invalid one with a warning, exits 1."""
    await _dead_letters(amqp_url, sqlite_url)
    done = await _cli("dlq", "replay", "--all", env=env, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout.strip() == "replayed 1"
    listed = await _cli("dlq", "list", env=env, cwd=tmp_path)
    assert "dead-1" in listed.stdout and "1 dead-lettered" in listed.stderr


async def test_dlq_show_and_drop(
    env: dict[str, str], amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """`dlq show ID` says whether a replay would send it and masks the number; `dlq drop ID` deletes only it."""
    await _dead_letters(amqp_url, sqlite_url)
    shown = await _cli("dlq", "show", "dead-2", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "valid now" in shown.stdout
    assert "+14155550123" not in shown.stdout and "+1415*****23" in shown.stdout
    dropped = await _cli("dlq", "drop", "dead-2", env=env, cwd=tmp_path)
    assert dropped.returncode == 0 and dropped.stdout.strip() == "dropped 1"
    listed = await _cli("dlq", "list", env=env, cwd=tmp_path)
    assert "dead-2" not in listed.stdout and "dead-1" in listed.stdout
