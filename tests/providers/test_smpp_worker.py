"""The SMPP provider inside a real worker, RabbitMQ and store: receipts, failover, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from smsrelay.providers.smpp import SmppProvider
from smsrelay.providers.smsc_sim import SmscConfig, SmscSimulator
from smsrelay.store.receipts import ReceiptStore
from tests.conftest import eventually
from tests.integration.harness import event_log, publish_raw, request, running_worker
from tests.providers.smpp_helpers import smpp_settings

DELIVERED_TO = "+14155550123"
UNDELIVERED_TO = "+14155550124"


def provider_config(smsc: SmscSimulator, **overrides: Any) -> dict[str, Any]:
    """The ``providers.smpp`` entry of a worker's settings, for ``smsc``."""
    settings = smpp_settings(smsc, **overrides).model_dump(mode="json", exclude_none=True)
    settings["password"] = "secret"
    return settings


async def test_receipts_settle_messages_through_the_worker(amqp_url: str, sqlite_url: str) -> None:
    """deliver_sm receipts reach the store and events: delivered, undelivered, and a 3-part
    message delivered only once all three parts are."""
    config = SmscConfig(undeliverable_numbers=[UNDELIVERED_TO], receipt_delay=0.2)
    long_body = "L" * 400
    async with (
        SmscSimulator(config) as smsc,
        event_log(amqp_url) as events,
        running_worker(
            amqp_url,
            sqlite_url,
            providers={"smpp": provider_config(smsc)},
            routes={"*": ["smpp"]},
        ) as rt,
    ):
        await publish_raw(
            amqp_url,
            [
                request("ok-1", to=DELIVERED_TO),
                request("bad-1", to=UNDELIVERED_TO),
                request("long-1", to=DELIVERED_TO, body=long_body),
            ],
        )
        await eventually(lambda: events.states("ok-1") == ["sent", "delivered"])
        await eventually(lambda: events.states("bad-1") == ["sent", "undelivered"])
        await eventually(lambda: events.states("long-1") == ["sent", "delivered"])
        history = await ReceiptStore(rt.store).receipts_for("long-1")
        record = await rt.store.get("long-1")
    assert sorted(r.part for r in history if r.part) == [1, 2, 3]
    assert record is not None and record.state.value == "delivered"
    assert events.of("bad-1")[-1]["error"]["code"] == "smpp:001"


async def test_a_dropped_bind_fails_over_and_the_link_comes_back(
    amqp_url: str, sqlite_url: str
) -> None:
    """While the SMSC drops the bind, messages go to the next provider; afterwards to SMPP again."""
    async with (
        SmscSimulator(SmscConfig(receipts=False)) as smsc,
        event_log(amqp_url) as events,
        running_worker(
            amqp_url,
            sqlite_url,
            providers={"smpp": provider_config(smsc), "backup": {"type": "simulator"}},
            routes={"*": ["smpp", "backup"]},
        ) as rt,
    ):
        smpp = rt.providers["smpp"]
        assert isinstance(smpp, SmppProvider)
        await publish_raw(amqp_url, [request("before")])
        await eventually(lambda: events.states("before") == ["sent"])
        outage = asyncio.create_task(smsc.outage(2.0))
        await eventually(lambda: smpp.bound == 0)
        await publish_raw(amqp_url, [request("during")])
        await eventually(lambda: events.states("during") == ["sent"])
        await outage
        await eventually(lambda: smpp.bound == 1)
        await publish_raw(amqp_url, [request("after")])
        await eventually(lambda: events.states("after") == ["sent"])
    providers = {m: events.of(m)[0]["provider"] for m in ("before", "during", "after")}
    assert providers == {"before": "smpp", "during": "backup", "after": "smpp"}


async def test_sigterm_unbinds_after_in_flight_answers(
    amqp_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """SIGTERM: the worker waits for the submit_sm_resp of sends in flight, then unbinds."""
    config = SmscConfig(resp_delay=1.0, receipts=False)
    async with SmscSimulator(config) as smsc, event_log(amqp_url) as events:
        proc = _worker(tmp_path, amqp_url, sqlite_url, provider_config(smsc))
        try:
            await eventually(lambda: smsc.counts["binds"] == 1, seconds=30)
            await publish_raw(amqp_url, [request(f"sig-{i}") for i in range(5)])
            await eventually(lambda: smsc.counts["submit_sm"] == 5)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        await eventually(lambda: smsc.counts["unbinds"] == 1)
        await eventually(lambda: all(events.states(f"sig-{i}") == ["sent"] for i in range(5)))
    assert code == 0
    assert smsc.counts["accepted"] == 5


def _worker(
    tmp: Path, amqp_url: str, database_url: str, smpp: dict[str, Any]
) -> subprocess.Popen[bytes]:
    config = tmp / "smsrelay.yaml"
    config.write_text(
        yaml.safe_dump({"providers": {"smpp": smpp}, "routes": {"*": ["smpp"]}, "grace_period": 15})
    )
    env = {
        **os.environ,
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": database_url,
        "SMSRELAY_CONFIG": str(config),
    }
    with (tmp / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "smsrelay", "worker"], env=env, stdout=log, stderr=log
        )
