"""A worker and an API process can be scraped and probed: metrics, health, readiness."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from smsrelay.client import Client
from smsrelay.metrics import Metrics
from smsrelay.ops_http import OpsServer
from tests.ops.support import free_port, get, metric, running, wait_until


@pytest.fixture
def env(amqp_url: str, sqlite_url: str) -> dict[str, str]:
    """The test's vhost and SQLite file, JSON logs, queues read every 0.2 s."""
    return {
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": sqlite_url,
        "SMSRELAY_LOG_FORMAT": "json",
        "SMSRELAY_QUEUE_POLL_INTERVAL": "0.2",
        "SMSRELAY_RETRY__DELAYS": "1,5",
    }


def test_worker_serves_metrics_health_and_readiness(
    env: dict[str, str], amqp_url: str, tmp_path: Path
) -> None:
    """With metrics_port set, the worker answers /healthz, /readyz and /metrics with queue and send metrics."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env["SMSRELAY_METRICS_PORT"] = str(port)
    with running(["worker"], env, tmp_path / "worker.log") as worker:
        wait_until(lambda: get(f"{base}/readyz")[0] == 200, worker, what="ready")
        assert get(f"{base}/healthz") == (200, '{"status": "ok"}')
        assert '"consuming": "ok"' in get(f"{base}/readyz")[1]
        with Client(amqp_url) as client:
            client.send(id="mon-1", to="+14155550123", body="hi")

        def scraped() -> str:
            return get(f"{base}/metrics")[1]

        wait_until(
            lambda: (
                metric(
                    scraped(),
                    "smsrelay_sends_total",
                    provider="simulator",
                    country="US",
                    outcome="sent",
                )
                == 1
            ),
            worker,
            what="the send counted",
        )
        # The delivery is still being recorded and acked when the send is counted.
        wait_until(lambda: metric(scraped(), "smsrelay_in_flight_sends") == 0, worker)
        # Every queue a message can wait in, by the names the topology gives them now;
        # the first poll of them all may still be under way.
        queues = (
            "sms.send",
            "sms.otp",
            "sms.dead",
            "sms.retry.1000ms",
            "sms.retry.otp.5000ms",
            "sms.resend.5000ms",
            "sms.resend.check",
        )
        wait_until(
            lambda: all(
                metric(scraped(), "smsrelay_queue_messages", queue=q) is not None for q in queues
            ),
            worker,
            what="every queue polled",
        )
        text = scraped()
    assert metric(text, "smsrelay_queue_consumers", queue="sms.send") == 1
    assert metric(text, "smsrelay_worker_consuming") == 1
    assert "smsrelay_build_info{version=" in text
    assert "smsrelay_send_latency_seconds_bucket" in text


def test_worker_without_metrics_port_opens_no_port(env: dict[str, str], tmp_path: Path) -> None:
    """metrics_port defaults to 0: the worker listens nowhere (two workers on one host do not clash)."""
    with running(["worker"], env, tmp_path / "worker.log") as worker:
        wait_until(lambda: any(x["event"] == "worker_started" for x in worker.lines()), worker)
        assert not any(x["event"] == "ops_listening" for x in worker.lines())


def test_api_is_unready_while_nobody_consumes_sms_send(env: dict[str, str], tmp_path: Path) -> None:
    """The API's /readyz is 503 (consumers failed) until a worker consumes sms.send, then 200."""
    port = free_port()
    env["SMSRELAY_API_PORT"] = str(port)
    readyz = f"http://127.0.0.1:{port}/readyz"
    with running(["api"], env, tmp_path / "api.log") as api:
        wait_until(lambda: '"consumers":"failed"' in get(readyz)[1], api, what="consumers failed")
        assert get(readyz)[0] == 503
        with running(["worker"], env, tmp_path / "worker.log"):
            wait_until(lambda: get(readyz)[0] == 200, api, what="ready with a worker")
            assert '"consumers":"ok"' in get(readyz)[1]
            metrics = get(f"http://127.0.0.1:{port}/metrics")[1]
            assert metric(metrics, "smsrelay_queue_consumers", queue="sms.send") == 1


def test_start_up_summary_line_masks_credentials(env: dict[str, str], tmp_path: Path) -> None:
    """The worker logs one smsrelay_starting line: version, providers, routes, store, broker without password."""
    with running(["worker"], env, tmp_path / "worker.log") as worker:
        wait_until(lambda: any(x["event"] == "worker_started" for x in worker.lines()), worker)
        [line] = [x for x in worker.lines() if x["event"] == "smsrelay_starting"]
    assert line["role"] == "worker" and line["version"].startswith("0.")
    assert line["providers"] == {"simulator": "simulator"}
    assert line["routes"] == {"*": ["simulator"]}
    assert line["broker"].startswith("amqp://guest:***@") and "guest:guest" not in str(line)
    assert line["store"].startswith("sqlite+aiosqlite:///")


def test_a_message_that_ends_failed_logs_a_warning(
    env: dict[str, str], amqp_url: str, tmp_path: Path
) -> None:
    """A message the provider rejects ends `failed` and its log line is a warning with the error code."""
    env["SMSRELAY_PROVIDERS"] = json.dumps(
        {"simulator": {"type": "simulator", "permanent_failure_numbers": ["+14155550199"]}}
    )
    with running(["worker"], env, tmp_path / "worker.log") as worker:
        wait_until(lambda: any(x["event"] == "worker_started" for x in worker.lines()), worker)
        with Client(amqp_url) as client:
            client.send(id="fail-1", to="+14155550199", body="hi")
        wait_until(lambda: any(x["event"] == "message_failed" for x in worker.lines()), worker)
        [line] = [x for x in worker.lines() if x["event"] == "message_failed"]
    assert line["level"] == "warning" and line["id"] == "fail-1" and line["error"]


async def test_ops_server_names_the_failing_check() -> None:
    """/readyz is 503 naming the failed check, 200 once all pass; port 0 binds a free port."""
    results = {"consuming": False, "store": True}

    async def checks() -> dict[str, bool]:
        return dict(results)

    server = OpsServer(Metrics(), checks)
    await server.start("127.0.0.1", 0)
    try:
        readyz = f"http://127.0.0.1:{server.port}/readyz"
        status, body = await asyncio.to_thread(get, readyz)
        assert status == 503
        assert json.loads(body) == {
            "status": "unready",
            "checks": {"consuming": "failed", "store": "ok"},
        }
        results["consuming"] = True
        assert (await asyncio.to_thread(get, readyz))[0] == 200
    finally:
        await server.close()
