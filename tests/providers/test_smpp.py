"""The SMPP provider against the SMSC simulator: sends, parts, errors, receipts, links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from smsrelay.errors import (
    OutcomeUnknown,
    RecipientRejected,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.models import ReceiptStatus
from smsrelay.providers import build
from smsrelay.providers.smpp import SmppProvider, SmppSettings
from smsrelay.providers.smsc_sim import SmscConfig, SmscSimulator
from tests.conftest import eventually
from tests.providers.contract import CapturedRequest, ProviderContractTest, message
from tests.providers.smpp_helpers import RecordingSink, smpp_settings


class TestSmppContract(ProviderContractTest):
    """The SMPP provider keeps the provider contract against the simulator (no HTTP spec)."""

    provider_type = "smpp"
    spec = None

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[SmscSimulator]:
        async with SmscSimulator(SmscConfig(receipts=False)) as smsc:
            yield smsc

    def settings(self, fake: SmscSimulator) -> SmppSettings:
        return smpp_settings(fake)

    def arrange_failure(self, fake: SmscSimulator, to: str, kind: str) -> None:
        numbers = {"recipient": fake.config.reject_numbers, "transient": fake.config.fail_numbers}
        numbers[kind].append(to)

    def captured(self, fake: SmscSimulator) -> list[CapturedRequest]:
        return [
            CapturedRequest("submit_sm", "", {}, "", s.short_message, answer=s.message_id.encode())
            for s in fake.submitted
        ]


@asynccontextmanager
async def linked(
    smsc: SmscSimulator, sink: RecordingSink | None = None, **overrides: object
) -> AsyncIterator[SmppProvider]:
    """A started SMPP provider bound to ``smsc``; closed (unbound) afterwards."""
    provider = build("smpp", smpp_settings(smsc, **overrides))
    assert isinstance(provider, SmppProvider)
    await provider.start(sink or RecordingSink())
    try:
        yield provider
    finally:
        await provider.close()


async def test_send_returns_the_smsc_message_id_and_one_part() -> None:
    """A short message is one submit_sm in GSM-7 (data_coding 0) and returns the SMSC's id."""
    async with SmscSimulator() as smsc, linked(smsc) as provider:
        result = await provider.send(message(body="Hello {world} €"))
    [taken] = smsc.submitted
    assert result.provider_message_id == taken.message_id and result.segments == 1
    assert taken.data_coding == 0 and taken.esm_class == 0
    assert taken.text == "Hello {world} €"
    assert taken.short_message.startswith(b"Hello \x1b\x28")  # '{' is escape + 0x28


async def test_long_message_goes_in_concatenated_parts_with_every_id_kept() -> None:
    """A 3-part GSM-7 body is 3 submit_sm with an 8-bit UDH; each part's receipt is tied to it."""
    sink = RecordingSink()
    body = "x" * 152 + "€" + "y" * 200  # the euro sign's escape pair never splits
    async with SmscSimulator() as smsc, linked(smsc, sink) as provider:
        result = await provider.send(message(body=body))
        await eventually(lambda: len(sink.receipts) == 3)
    parts = smsc.submitted
    assert result.segments == 3 and len(parts) == 3
    assert [p.concatenation[1:] for p in parts if p.concatenation] == [(3, 1), (3, 2), (3, 3)]
    assert len({p.concatenation[0] for p in parts if p.concatenation}) == 1
    assert all(p.esm_class & 0x40 for p in parts)
    assert "".join(p.text for p in parts) == body
    assert parts[0].text == "x" * 152  # 153 septets: the escape pair starts part 2
    assert result.provider_message_id == parts[0].message_id
    by_part = {r.part: r for r in sink.receipts}
    assert sorted(by_part) == [1, 2, 3]
    assert all(r.parts == 3 and r.message_id == "m-1" for r in sink.receipts)
    assert [by_part[i].provider_message_id for i in (1, 2, 3)] == [p.message_id for p in parts]


async def test_ucs2_parts_use_data_coding_8_and_keep_surrogate_pairs() -> None:
    """A body outside GSM-7 goes as UCS-2 (data_coding 8), 67 units per part, pairs whole."""
    body = "Привет " * 10 + "😀" * 30
    async with SmscSimulator(SmscConfig(receipts=False)) as smsc, linked(smsc) as provider:
        result = await provider.send(message(body=body))
    assert result.segments == len(smsc.submitted) > 1
    assert all(p.data_coding == 8 for p in smsc.submitted)
    assert "".join(p.text for p in smsc.submitted) == body


async def test_payload_mode_sends_one_submit_with_message_payload() -> None:
    """With long_messages: payload, a long body is one submit_sm carrying message_payload."""
    body = "z" * 400
    async with (
        SmscSimulator(SmscConfig(receipts=False)) as smsc,
        linked(smsc, long_messages="payload") as provider,
    ):
        result = await provider.send(message(body=body))
    [taken] = smsc.submitted
    assert taken.payload is not None and taken.text == body and taken.short_message == b""
    assert result.segments == 3


@pytest.mark.parametrize(
    ("resp_ids", "receipt_ids"), [("dec", "dec"), ("hex", "hex"), ("hex", "dec"), ("dec", "hex")]
)
async def test_receipts_match_whether_ids_come_back_in_hex_or_decimal(
    resp_ids: str, receipt_ids: str
) -> None:
    """A receipt reporting the id in the other base still names the message id as answered."""
    sink = RecordingSink()
    config = SmscConfig(resp_ids=resp_ids, receipt_ids=receipt_ids, receipt_tlvs=False)  # type: ignore[arg-type]
    async with SmscSimulator(config) as smsc, linked(smsc, sink) as provider:
        result = await provider.send(message())
        await eventually(lambda: len(sink.receipts) == 1)
    [receipt] = sink.receipts
    assert receipt.provider_message_id == result.provider_message_id
    assert receipt.message_id == "m-1" and receipt.status is ReceiptStatus.DELIVERED


async def test_undelivered_receipt_is_normalised_with_its_error() -> None:
    """stat:UNDELIV (message_state 5) becomes an undelivered receipt carrying err."""
    sink = RecordingSink()
    config = SmscConfig(undeliverable_numbers=["+14155550123"])
    async with SmscSimulator(config) as smsc, linked(smsc, sink) as provider:
        await provider.send(message())
        await eventually(lambda: len(sink.receipts) == 1)
    [receipt] = sink.receipts
    assert receipt.status is ReceiptStatus.UNDELIVERED and receipt.provider_status == "UNDELIV"
    assert receipt.error_code == "001"


async def test_receipt_for_an_unknown_id_is_handed_over_as_it_came() -> None:
    """A receipt for an id this link never sent goes to the sink unmatched (the store keeps it)."""
    sink = RecordingSink()
    async with SmscSimulator() as smsc, linked(smsc, sink) as provider:
        await provider.send(message())
        await eventually(lambda: len(sink.receipts) == 1)
        provider._parts = type(provider._parts)(1000)  # forget the id, as after a restart
        smsc.submitted.clear()
        await provider.send(message(id="m-2"))
        provider._parts = type(provider._parts)(1000)
        await eventually(lambda: len(sink.receipts) == 2)
    unknown = sink.receipts[1]
    assert unknown.message_id is None and unknown.provider_message_id


async def test_a_receipt_sent_twice_is_applied_once() -> None:
    """The SMSC repeating a receipt gives the same digest: the sink refuses the replay."""
    sink = RecordingSink()
    async with (
        SmscSimulator(SmscConfig(duplicate_receipt_share=1.0)) as smsc,
        linked(smsc, sink) as provider,
    ):
        await provider.send(message())
        await eventually(lambda: sink.replays == 1)
    assert len(sink.receipts) == 1


async def test_throttling_slows_the_link_without_failing_a_send() -> None:
    """With 40% ESME_RTHROTTLED every message is still taken, on the same link."""
    config = SmscConfig(throttle_share=0.4, seed=7, receipts=False)
    async with SmscSimulator(config) as smsc, linked(smsc, throttle_backoff=0.01) as provider:
        for i in range(30):
            await provider.send(message(id=f"t-{i}"))
    assert smsc.counts["throttled"] > 5
    assert smsc.counts["accepted"] == 30 and smsc.counts["binds"] == 1


async def test_recipient_rejection_and_system_error_map_onto_the_tree() -> None:
    """ESME_RINVDSTADR rejects the recipient; ESME_RSYSERR is transient."""
    config = SmscConfig(reject_numbers=["+14155550100"], fail_numbers=["+14155550101"])
    async with SmscSimulator(config) as smsc, linked(smsc) as provider:
        with pytest.raises(RecipientRejected) as rejected:
            await provider.send(message(to="+14155550100"))
        with pytest.raises(TransientProviderError) as failed:
            await provider.send(message(to="+14155550101"))
    assert rejected.value.code == "ESME_RINVDSTADR" and failed.value.code == "ESME_RSYSERR"


async def test_no_submit_sm_resp_is_an_unknown_outcome() -> None:
    """No submit_sm_resp within the timeout: OutcomeUnknown (the SMSC may have the message)."""
    config = SmscConfig(silent_numbers=["+14155550123"])
    async with SmscSimulator(config) as smsc, linked(smsc, timeout=0.5) as provider:
        with pytest.raises(OutcomeUnknown) as caught:
            await provider.send(message())
        smsc.answer_held()
    assert caught.value.code == "no-answer"


async def test_a_later_part_without_answer_makes_the_message_unconfirmed() -> None:
    """Once a part was taken, a later part's failure is UnconfirmedSend: never re-sent elsewhere."""
    async with SmscSimulator(SmscConfig(receipts=False)) as smsc, linked(smsc, timeout=0.5) as p:
        smsc.config.no_resp_share = 0.0
        original = smsc._on_submit

        def second_unanswered(event: object) -> None:
            if smsc.counts["submit_sm"] == 1:
                smsc.config.silent_numbers.append("+14155550123")
            original(event)  # type: ignore[arg-type]

        smsc._on_submit = second_unanswered  # type: ignore[method-assign]
        with pytest.raises(UnconfirmedSend):
            await p.send(message(body="w" * 300))
        smsc.answer_held()


async def test_dropped_bind_fails_fast_then_reconnects() -> None:
    """While the SMSC refuses binds, a send is transient at once; the link rebinds afterwards."""
    async with SmscSimulator(SmscConfig(receipts=False)) as smsc, linked(smsc) as provider:
        await provider.send(message())
        outage = __import__("asyncio").create_task(smsc.outage(1.0))
        await eventually(lambda: provider.bound == 0)
        with pytest.raises(TransientProviderError) as caught:
            await provider.send(message(id="m-2"))
        assert caught.value.code == "no-bind"
        await outage
        await eventually(lambda: provider.bound == 1)
        await provider.send(message(id="m-3"))
    assert smsc.counts["binds"] == 2


async def test_close_unbinds_after_in_flight_answers_arrive() -> None:
    """close() waits for the submit_sm_resp of a send in flight, then unbinds."""
    import asyncio

    config = SmscConfig(resp_delay=0.5, receipts=False)
    async with SmscSimulator(config) as smsc:
        provider = build("smpp", smpp_settings(smsc))
        assert isinstance(provider, SmppProvider)
        await provider.start(RecordingSink())
        sending = asyncio.create_task(provider.send(message()))
        await eventually(lambda: smsc.counts["submit_sm"] == 1)
        await provider.close()
        result = await sending
        await eventually(lambda: smsc.counts["unbinds"] == 1)
    assert result.provider_message_id == smsc.submitted[0].message_id


async def test_transmitter_receiver_mode_binds_twice_and_gets_receipts_on_the_receiver() -> None:
    """bind_mode transmitter_receiver opens a TX and an RX session; receipts come over RX."""
    sink = RecordingSink()
    async with (
        SmscSimulator() as smsc,
        linked(smsc, sink, bind_mode="transmitter_receiver", binds=2) as provider,
    ):
        await eventually(lambda: smsc.counts["binds"] == 4)
        for i in range(4):
            await provider.send(message(id=f"r-{i}"))
        await eventually(lambda: len(sink.receipts) == 4)
    assert {r.message_id for r in sink.receipts} == {f"r-{i}" for i in range(4)}


async def test_refused_bind_is_permanent_for_the_link() -> None:
    """An SMSC answering bind with ESME_RINVPASWD: sends raise AuthenticationFailed, not transient."""
    import asyncio
    import struct

    from smsrelay.errors import AuthenticationFailed

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(16)
        length, command, _, sequence = struct.unpack(">IIII", header)
        await reader.readexactly(length - 16)
        body = b"SIM\x00"
        writer.write(struct.pack(">IIII", 16 + len(body), command | 0x80000000, 0x0E, sequence))
        writer.write(body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stand_in = SmscSimulator(SmscConfig(port=port))
    try:
        provider = build("smpp", smpp_settings(stand_in, timeout=1.0, reconnect_max=5.0))
        assert isinstance(provider, SmppProvider)
        await provider.start(RecordingSink())
        await eventually(lambda: provider.binds[0].tx.bind_error is not None)
        with pytest.raises(AuthenticationFailed) as caught:
            await provider.send(message())
        await provider.close()
    finally:
        server.close()
        await server.wait_closed()
    # smpp34 does not pass the status on: the refusal is known, not its reason.
    assert caught.value.code in {"ESME_RINVPASWD", "bind-refused"}


async def test_throughput_limit_paces_each_bind() -> None:
    """throughput: 20 spaces submit_sm 50 ms apart on a bind, however many are waiting."""
    import asyncio
    import time

    async with (
        SmscSimulator(SmscConfig(receipts=False)) as smsc,
        linked(smsc, throughput=20.0) as provider,
    ):
        started = time.monotonic()
        await asyncio.gather(*(provider.send(message(id=f"p-{i}")) for i in range(11)))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.5 and smsc.counts["accepted"] == 11
