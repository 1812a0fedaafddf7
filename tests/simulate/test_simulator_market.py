"""The simulator as one provider of a market: faults per country, prices, receipts via the sink."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import pytest

from smsrelay.errors import RateLimited, TransientProviderError
from smsrelay.models import Receipt, ReceiptStatus, SendRequest
from smsrelay.providers.simulator import ReceiptDelay, SimulatorProvider, SimulatorSettings


class CollectingSink:
    """A ReceiptSink that keeps what it is handed (the worker's applies them to the store)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, str, list[Receipt]]] = []
        self.arrived = asyncio.Event()

    async def deliver(self, provider: str, digest: str, receipts: Sequence[Receipt]) -> None:
        self.batches.append((provider, digest, list(receipts)))
        self.arrived.set()

    @property
    def receipts(self) -> list[Receipt]:
        return [r for _, _, batch in self.batches for r in batch]


def request(n: int, to: str = "+447400123456") -> SendRequest:
    return SendRequest(id=f"m-{n}", to=to, body="hello")


def market(**gb: object) -> SimulatorProvider:
    settings = SimulatorSettings(
        seed=1,
        currency="EUR",
        market={
            "GB": {"price": "0.02", "receipt_delay": {"distribution": "fixed", "median": 0}, **gb}
        },
    )
    return SimulatorProvider("sim", settings)


async def test_an_accepted_send_reports_its_price_and_its_receipt_reaches_the_sink() -> None:
    """The answer carries the charge (parts x price); the receipt goes to the sink with our id."""
    provider, sink = market(), CollectingSink()
    await provider.start(sink)
    try:
        result = await provider.send(request(1))
        assert (result.cost, result.currency) == (Decimal("0.02"), "EUR")
        await asyncio.wait_for(sink.arrived.wait(), 5)
        (receipt,) = sink.receipts
        assert receipt.message_id == "m-1"
        assert receipt.provider_message_id == result.provider_message_id
        assert receipt.status is ReceiptStatus.DELIVERED
        assert provider.pending_receipts == 0
    finally:
        await provider.close()


async def test_a_change_while_running_applies_to_the_next_sends() -> None:
    """A silent collapse: sends still succeed, their receipts say undelivered."""
    provider, sink = market(), CollectingSink()
    await provider.start(sink)
    try:
        provider.change("GB", {"delivery_rate": 0.0})
        await provider.send(request(2))
        await asyncio.wait_for(sink.arrived.wait(), 5)
        assert [r.status for r in sink.receipts] == [ReceiptStatus.UNDELIVERED]
    finally:
        await provider.close()


async def test_no_receipts_mode_sends_none() -> None:
    """``receipts: none``: accepted, and nothing ever comes back."""
    provider, sink = market(receipts="none"), CollectingSink()
    await provider.start(sink)
    try:
        await provider.send(request(3))
        assert provider.pending_receipts == 0 and sink.batches == []
    finally:
        await provider.close()


async def test_outage_and_throttling_raise_the_provider_errors() -> None:
    """failure_rate 1 is a transient error; throttle_rate 1 a RateLimited with Retry-After."""
    provider = market(failure_rate=1.0)
    with pytest.raises(TransientProviderError) as outage:
        await provider.send(request(4))
    assert outage.value.code == "SIM-OUTAGE" and not isinstance(outage.value, RateLimited)
    provider.change("GB", {"failure_rate": 0.0, "throttle_rate": 1.0, "retry_after": 3})
    with pytest.raises(RateLimited) as throttled:
        await provider.send(request(5))
    assert throttled.value.retry_after == 3


async def test_countries_outside_the_market_behave_as_before() -> None:
    """A number in a country the market does not list: no charge, no receipt (the old simulator)."""
    provider, sink = market(), CollectingSink()
    await provider.start(sink)
    try:
        result = await provider.send(request(6, to="+14155550123"))
        assert result.cost is None and provider.pending_receipts == 0
    finally:
        await provider.close()


def test_an_invalid_change_is_refused_and_changes_nothing() -> None:
    """A change is validated like the settings; the old behaviour stays."""
    provider = market()
    with pytest.raises(ValueError, match="sim GB"):
        provider.change("GB", {"delivery_rate": 3})
    assert provider.behaviour("GB").delivery_rate == 1.0  # type: ignore[union-attr]


def test_lognormal_delays_have_the_configured_median_and_tail() -> None:
    """Median and p95 of many draws are near the configured ones; scaling divides both."""
    import random

    delay = ReceiptDelay(distribution="lognormal", median=4, p95=20)
    rng = random.Random(5)
    draws = sorted(delay.sample(rng) for _ in range(20_000))
    assert draws[10_000] == pytest.approx(4, rel=0.05)
    assert draws[19_000] == pytest.approx(20, rel=0.08)
    assert delay.scaled(10) == ReceiptDelay(distribution="lognormal", median=0.4, p95=2)


def test_market_keys_are_countries_or_a_star() -> None:
    """A market keyed by anything but an ISO country code or * is refused at start."""
    with pytest.raises(ValueError, match="market keys are countries"):
        SimulatorSettings(market={"uk": {"price": "0.02"}})
    assert SimulatorSettings(market={"*": {"price": "0.02"}, "GB": {}}).market["GB"].price is None
