"""The guard in a real worker on the real broker, its state in the shared Redis."""

from __future__ import annotations

import pytest

from smsrelay.client import AsyncClient
from tests.conftest import eventually
from tests.guard.conftest import REDIS_URL
from tests.integration.harness import event_log, running_worker, simulator

NUMBER = "+447400123456"


def _decisions(runtime: object, rule: str, action: str, mode: str) -> float:
    registry = runtime.metrics.registry  # type: ignore[attr-defined]
    labels = {"rule": rule, "action": action, "mode": mode}
    return registry.get_sample_value("smsrelay_guard_decisions_total", labels) or 0.0


@pytest.mark.parametrize("mode", ["enforce", "monitor", "off"])
async def test_third_otp_to_a_number_by_mode(
    mode: str, amqp_url: str, sqlite_url: str, redis_prefix: str
) -> None:
    """With 2 OTPs per number allowed: enforce rejects the third (never sent, code and figure);
    monitor sends it and counts the same decision; off sends it and counts nothing."""
    overrides = {
        "guard": {"mode": mode, "number": {"limit": 2}},
        "redis_url": REDIS_URL,
        "limits": {"redis_prefix": redis_prefix},
    }
    async with (
        event_log(amqp_url) as events,
        running_worker(amqp_url, sqlite_url, **overrides) as rt,
    ):
        async with AsyncClient(amqp_url) as client:
            for n in range(3):
                await client.send(id=f"otp-{n}", to=NUMBER, body=f"code {n}", kind="otp")
                await eventually(lambda n=n: len(events.states(f"otp-{n}")) == 1)
            await client.send(id="mkt", to=NUMBER, body="sale", kind="marketing")
        await eventually(lambda: events.states("mkt") == ["sent"])
        sent = [r.id for r in simulator(rt, "simulator").sent]
        third = events.of("otp-2")[0]
        record = await rt.store.get("otp-2")
        if mode == "enforce":
            assert third["state"] == "rejected" and sent == ["otp-0", "otp-1", "mkt"]
            assert third["error"]["code"] == "guard-velocity-number"
            assert "3 OTPs to this number in 600 s (limit 2)" in third["error"]["message"]
            assert record is not None and record.attempts == []
            assert _decisions(rt, "velocity-number", "refuse", "enforce") == 1
        else:
            assert third["state"] == "sent" and sent == ["otp-0", "otp-1", "otp-2", "mkt"]
        if mode == "monitor":
            assert _decisions(rt, "velocity-number", "monitor", "monitor") == 1
            assert _decisions(rt, "none", "allow", "monitor") == 2
        if mode == "off":
            assert rt.guard is None
            assert _decisions(rt, "none", "allow", "off") == 0
