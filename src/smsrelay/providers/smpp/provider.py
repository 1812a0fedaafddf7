"""SMPP 3.4: direct binds to an SMSC (a carrier or an aggregator) as one more provider.

Library: ``smpp34`` (MIT, Real Time Telecom B.V.; Rust/tokio core with an asyncio API,
client and server, windowing, TLS through rustls, typed stubs). Chosen over
``aiosmpplib`` (0.7, ESME side only, no server to build a simulator on, pure-Python
codec, licence file inherited from ``naz`` and no licence in its metadata): smpp34 gives
the simulator and the client one codec, checked against Kannel's emulator in the tests,
and its core does the framing, sequence windowing and timers off the event loop (one
GIL crossing per message; the local benchmark is in bench/README.md). Its Python API
sets neither the ``enquire_link`` nor the response timer; ``timeout`` bounds each
``submit_sm`` here, and ``enquire_link_interval`` is how often the link's liveness is
checked (see link.py).

``command_status`` of a ``submit_sm_resp`` onto the error tree:

==========  ================  =======================================  ==========================
status      name              meaning                                  what happens
==========  ================  =======================================  ==========================
0x00000058  ESME_RTHROTTLED   over the SMSC's rate                     back-pressure: the bind
0x00000014  ESME_RMSGQFUL     the SMSC's queue is full                 slows down and the part is
                                                                       sent again on it; after
                                                                       ``throttle_patience`` s:
                                                                       ``RateLimited``
0x0000000B  ESME_RINVDSTADR   invalid destination address              RecipientRejected
0x00000050  ESME_RINVDSTTON   invalid destination TON                  PermanentProviderError
0x00000051  ESME_RINVDSTNPI   invalid destination NPI                  PermanentProviderError
0x0000000A  ESME_RINVSRCADR   invalid source address (sender)          PermanentProviderError
0x00000001  ESME_RINVMSGLEN   message too long                         PermanentProviderError
0x00000008  ESME_RSYSERR      SMSC system error                        TransientProviderError
0x00000045  ESME_RSUBMITFAIL  submit_sm failed                         TransientProviderError
0x0000000D  ESME_RBINDFAIL    bind failed                              AuthenticationFailed
0x0000000E  ESME_RINVPASWD    invalid password                         AuthenticationFailed
0x0000000F  ESME_RINVSYSID    invalid system_id                        AuthenticationFailed
other       (generic_nack)    refused                                  PermanentProviderError
==========  ================  =======================================  ==========================

A refused bind (0x0D-0x0F) is permanent for the link: while every bind is down for that
reason, a send raises ``AuthenticationFailed`` (the next provider is tried) and the link
asks again only every ``reconnect_max`` s. smpp34 1.5 does not report a refused bind's
``command_status``: the connection is made and the bind "times out" after ``timeout``;
that is taken as a refusal too (code ``bind-refused``), so an SMSC that accepts TCP but
never answers a bind is treated the same way. With no bind up for any other reason a send raises
``TransientProviderError`` at once (code ``no-bind``), so the dispatcher fails over
while the link reconnects. No ``submit_sm_resp`` within ``timeout``, or the bind lost
while waiting for it, is ``OutcomeUnknown``: the SMSC may have taken the part. A
``submit_sm_resp`` with status 0 and no ``message_id`` is ``UnconfirmedSend``. Once one
part of a message was taken, any failure of a later part is ``UnconfirmedSend``: a
retry anywhere would send the first parts twice.

Receipts (``deliver_sm`` with a receipt ``esm_class``; receipts.py) are tied to the part
they report by the part's message id, in the form the SMSC answered or its hex/decimal
twin, and handed to the worker's ``ReceiptSink`` as ``Receipt(part, parts)``, in batches
(one store transaction for those that arrive within 20 ms, up to 200): the store settles
a multipart message as delivered once every part is, and drops a receipt it already
holds. smpp34's core acknowledges every ``deliver_sm`` (``deliver_sm_resp``) itself.
A receipt whose id is not known yet (it overtook the ``submit_sm_resp``) waits
``receipt_match_wait`` s for it, then goes in with the id as sent, kept like any early
receipt. The part ids are remembered in memory (the last ``remembered_parts``): after a
worker restart, receipts for the second and later parts of older messages stay
unmatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from typing import Any, ClassVar, Literal

import smpp34
from pydantic import Field, SecretStr

from smsrelay.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RecipientRejected,
    StaleReceipt,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.logging import get_logger
from smsrelay.models import Receipt, SendRequest, SendResult
from smsrelay.providers.base import Provider, ProviderSettings, ReceiptSink, scrub
from smsrelay.providers.smpp import pdus, receipts
from smsrelay.providers.smpp.link import Bind

log = get_logger(__name__)

MAX_WAITING_RECEIPTS = 100_000
RECEIPT_BATCH = 200
RECEIPT_LINGER = 0.02
BACK_PRESSURE = {0x58: "ESME_RTHROTTLED", 0x14: "ESME_RMSGQFUL"}
ERRORS: dict[int, tuple[str, type[ProviderError]]] = {
    0x0B: ("ESME_RINVDSTADR", RecipientRejected),
    0x50: ("ESME_RINVDSTTON", PermanentProviderError),
    0x51: ("ESME_RINVDSTNPI", PermanentProviderError),
    0x0A: ("ESME_RINVSRCADR", PermanentProviderError),
    0x01: ("ESME_RINVMSGLEN", PermanentProviderError),
    0x08: ("ESME_RSYSERR", TransientProviderError),
    0x45: ("ESME_RSUBMITFAIL", TransientProviderError),
    0x0D: ("ESME_RBINDFAIL", AuthenticationFailed),
    0x0E: ("ESME_RINVPASWD", AuthenticationFailed),
    0x0F: ("ESME_RINVSYSID", AuthenticationFailed),
}


class SmppSettings(ProviderSettings):
    """An SMPP 3.4 link: where, who, how many binds, how fast, how long messages go."""

    type: Literal["smpp"] = "smpp"
    host: str
    port: int = Field(2775, ge=1, le=65535)
    tls: bool = False
    system_id: str = Field(max_length=16)
    password: SecretStr
    system_type: str = Field("", max_length=13)
    bind_mode: Literal["transceiver", "transmitter_receiver"] = "transceiver"
    # None: TON/NPI from the sender (alphanumeric 5/0, short code 3/0, number 1/1).
    source_ton: int | None = Field(None, ge=0, le=6)
    source_npi: int | None = Field(None, ge=0, le=18)
    dest_ton: int = Field(1, ge=0, le=6)
    dest_npi: int = Field(1, ge=0, le=18)
    binds: int = Field(1, ge=1, le=64)
    window: int = Field(10, ge=1, le=1000)
    enquire_link_interval: float = Field(30.0, gt=0)
    reconnect_initial: float = Field(1.0, gt=0)
    reconnect_max: float = Field(60.0, gt=0)
    # submit_sm per second per bind, as the carrier allows (0: no limit of our own).
    throughput: float = Field(0.0, ge=0)
    throttle_backoff: float = Field(0.05, gt=0)
    throttle_backoff_max: float = Field(2.0, gt=0)
    throttle_patience: float = Field(30.0, gt=0)
    long_messages: Literal["udh", "payload"] = "udh"
    registered_delivery: bool = True
    receipt_match_wait: float = Field(2.0, ge=0)
    remembered_parts: int = Field(200_000, ge=1000)


class SmppProvider(Provider):
    """The ``smpp`` provider: ``binds`` long-lived binds, one ``submit_sm`` per part."""

    type_name: ClassVar[str] = "smpp"
    settings_class: ClassVar[type[ProviderSettings]] = SmppSettings

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, SmppSettings)
        self.config = settings
        self.binds: list[Bind] = []
        self._sink: ReceiptSink | None = None
        self._parts = receipts.PartIds(settings.remembered_parts)
        self._turn = itertools.count()
        self._reference = itertools.count(1)
        self._opening = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._received: asyncio.Queue[tuple[str, Receipt]] = asyncio.Queue(MAX_WAITING_RECEIPTS)
        self._applier: asyncio.Task[None] | None = None

    # -- life of the links ----------------------------------------------------------------

    async def start(self, receipts: ReceiptSink) -> None:
        """Open the binds and wait (up to ``timeout``) for the first to be up."""
        self._sink = receipts
        await self._open()

    async def _open(self) -> None:
        async with self._opening:
            if self.binds:
                return
            self.binds = [
                Bind(self.name, self.config, self._on_deliver) for _ in range(self.config.binds)
            ]
            for bind in self.binds:
                bind.start()
            if self._sink is not None and self._applier is None:
                self._applier = asyncio.create_task(self._apply_batches(self._sink))
            waits = [asyncio.create_task(b.tx.bound.wait()) for b in self.binds]
            await asyncio.wait(
                waits, timeout=self.config.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in waits:
                task.cancel()

    async def close(self) -> None:
        """Unbind once in-flight ``submit_sm`` are answered; let receipts in hand be applied."""
        binds, self.binds = self.binds, []
        await asyncio.gather(*(b.close(self.config.timeout) for b in binds))
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.timeout)
        for task in self._tasks:
            task.cancel()
        if self._applier is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._received.join(), self.config.timeout)
            self._applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._applier
            self._applier = None

    @property
    def bound(self) -> int:
        """How many binds can take ``submit_sm`` now."""
        return sum(b.up for b in self.binds)

    # -- sending ------------------------------------------------------------------------------

    async def send(self, request: SendRequest) -> SendResult:
        if not self.binds:
            await self._open()
        bind = self._pick()
        payload = self.config.long_messages == "payload"
        parts, billed = pdus.build(request.body, next(self._reference) % 256, payload=payload)
        ids: list[str] = []
        for index, part in enumerate(parts):
            try:
                ids.append(await self._submit(bind, request, part))
            except ProviderError as exc:
                if not ids:
                    raise
                detail = f"part {index + 1} of {len(parts)} failed, others taken: {exc.message}"
                raise UnconfirmedSend(self.name, exc.code, detail) from exc
        counted = len(ids) if len(ids) > 1 else None
        for number, pmid in enumerate(ids, start=1):
            self._parts.add(
                receipts.PartRef(request.id, pmid, number if counted else None, counted)
            )
        return SendResult(provider_message_id=ids[0], segments=billed)

    def _pick(self) -> Bind:
        up = [b for b in self.binds if b.up]
        if up:
            return up[next(self._turn) % len(up)]
        refusals = [b.tx.bind_error for b in self.binds]
        if refusals and all(refusals):
            detail = (
                f"the SMSC refused the bind or did not answer it within {self.config.timeout:g} s"
            )
            raise AuthenticationFailed(self.name, refusals[0] or "bind-refused", detail)
        raise TransientProviderError(self.name, "no-bind", "no SMPP bind is up")

    async def _submit(self, bind: Bind, request: SendRequest, part: pdus.PartPdu) -> str:
        fields = self._fields(request, part)
        deadline = time.monotonic() + self.config.throttle_patience
        while True:
            await bind.pace()
            resp = await self._one_submit(bind, fields)
            status = resp.command_status
            if status == 0:
                bind.relieved()
                if not resp.message_id:
                    raise UnconfirmedSend(
                        self.name, "no-message-id", "submit_sm_resp without message_id"
                    )
                return resp.message_id
            if status in BACK_PRESSURE:
                if time.monotonic() + bind.backoff > deadline:
                    raise RateLimited(self.name, BACK_PRESSURE[status], "the SMSC kept throttling")
                bind.slow_down()
                continue
            name, error = ERRORS.get(status, (f"0x{status:08X}", PermanentProviderError))
            raise error(self.name, name, f"submit_sm refused with {name}")

    async def _one_submit(self, bind: Bind, fields: dict[str, Any]) -> smpp34.SubmitSmResp:
        try:
            return await bind.submit(**fields)
        except ConnectionError:
            raise TransientProviderError(self.name, "no-bind", "the bind went down") from None
        except TimeoutError:
            detail = f"no submit_sm_resp within {self.config.timeout:g} s"
            raise OutcomeUnknown(self.name, "no-answer", detail) from None
        except smpp34.SmppError as exc:
            # The bind was lost or the SMSC sent generic_nack while the part was out.
            raise OutcomeUnknown(self.name, "no-answer", scrub(str(exc))) from exc

    def _fields(self, request: SendRequest, part: pdus.PartPdu) -> dict[str, Any]:
        sender = request.sender or self.config.sender or ""
        ton, npi = pdus.source_ton_npi(sender)
        fields: dict[str, Any] = {
            "destination_addr": request.to.lstrip("+"),
            "short_message": part.short_message,
            "source_addr": sender.lstrip("+"),
            "source_addr_ton": self.config.source_ton
            if self.config.source_ton is not None
            else ton,
            "source_addr_npi": self.config.source_npi
            if self.config.source_npi is not None
            else npi,
            "dest_addr_ton": self.config.dest_ton,
            "dest_addr_npi": self.config.dest_npi,
            "esm_class": part.esm_class,
            "data_coding": part.data_coding,
            "registered_delivery": 1 if self.config.registered_delivery else 0,
        }
        if part.payload is not None:
            fields["tlvs"] = [smpp34.Tlv(receipts.TLV_MESSAGE_PAYLOAD, part.payload)]
        return fields

    # -- receipts -------------------------------------------------------------------------------

    async def _on_deliver(self, event: smpp34.DeliverSmEvent) -> None:
        if not receipts.is_receipt(event.esm_class):
            log.info("smpp_mo_ignored", provider=self.name)  # MO messages are not handled yet
            return
        tlvs = {t.tag: t for t in event.tlvs}
        receipted = tlvs.get(receipts.TLV_RECEIPTED_MESSAGE_ID)
        state = tlvs.get(receipts.TLV_MESSAGE_STATE)
        payload = tlvs.get(receipts.TLV_MESSAGE_PAYLOAD)
        report = receipts.parse(
            event.short_message or (payload.value if payload else b""),
            (receipted.as_string() or "").strip("\x00") or None if receipted else None,
            state.as_int() if state else None,
        )
        if report is None:
            log.warning("smpp_receipt_unreadable", provider=self.name)
            return
        task = asyncio.create_task(self._hand_over(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, report: receipts.DeliveryReport) -> None:
        part = self._parts.find(report.message_id)
        waited = 0.0
        while part is None and waited < self.config.receipt_match_wait:
            await asyncio.sleep(0.05)
            waited += 0.05
            part = self._parts.find(report.message_id)
        receipt = Receipt(
            provider_message_id=part.provider_message_id if part else report.message_id,
            message_id=part.message_id if part else None,
            status=report.status,
            provider_status=report.stat,
            error_code=report.error_code,
            part=part.part if part else None,
            parts=part.parts if part else None,
            at=report.done_at,
        )
        if self._applier is None:
            log.warning("smpp_receipt_without_sink", provider=self.name)
            return
        try:
            self._received.put_nowait((report.digest, receipt))
        except asyncio.QueueFull:
            log.error("smpp_receipt_dropped", provider=self.name, reason="too many waiting")

    async def _apply_batches(self, sink: ReceiptSink) -> None:
        # One transaction for the receipts that arrived together (up to RECEIPT_BATCH,
        # gathered for RECEIPT_LINGER s): per receipt, the store's lock and commit would
        # cap receipts far below the send rate. A receipt that comes twice in different
        # batches is dropped by the store's "once" rule (smsrelay.receipts).
        while True:
            batch = [await self._received.get()]
            deadline = asyncio.get_running_loop().time() + RECEIPT_LINGER
            while len(batch) < RECEIPT_BATCH:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._received.get(), left))
                except TimeoutError:
                    break
            try:
                await self._apply(sink, batch)
            finally:
                for _ in batch:
                    self._received.task_done()

    async def _apply(self, sink: ReceiptSink, batch: list[tuple[str, Receipt]]) -> None:
        digest = hashlib.sha256("|".join(d for d, _ in batch).encode()).hexdigest()
        delay = 0.2
        for _ in range(8):
            try:
                await sink.deliver(self.name, digest, [r for _, r in batch])
                return
            except StaleReceipt:
                return  # the SMSC sent these receipts again: they were applied already
            except Exception as exc:
                log.warning("smpp_receipt_deferred", provider=self.name, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.error("smpp_receipts_dropped", provider=self.name, count=len(batch))
