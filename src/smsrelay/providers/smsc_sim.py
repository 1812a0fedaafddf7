"""An SMSC simulator speaking SMPP 3.4 (smpp34's server side), for tests, benchmarks and scenarios.

It binds any ESME, answers ``submit_sm`` with a message id and sends a delivery receipt
(``deliver_sm``, ``esm_class`` 0x04, Appendix B text plus the ``receipted_message_id``
and ``message_state`` TLVs) ``receipt_delay`` s later, delivered with probability
``delivery_rate``. Faults, by share of submits or by recipient:

- ``throttle_share``: answer ``ESME_RTHROTTLED``;
- ``no_resp_share`` / ``silent_numbers``: never answer (the ``submit_sm_resp`` is lost);
- ``reject_numbers`` (``ESME_RINVDSTADR``), ``fail_numbers`` (``ESME_RSYSERR``);
- ``undeliverable_numbers``: receipt ``UNDELIV``;
- ``missing_receipt_share``, ``late_receipt_share`` (+ ``late_receipt_delay``),
  ``duplicate_receipt_share`` (the same receipt twice);
- ``resp_ids`` / ``receipt_ids``: ids answered and reported in decimal or hex (a mix
  is ``resp_ids="hex", receipt_ids="dec"``);
- ``outage(seconds)``: every bind dropped and new binds refused for that long.

Receipts for an ESME with no receiving bind up are queued and sent once one binds.

Run alone: ``python -m smsrelay.providers.smsc_sim --port 2775 --receipt-delay 0.5``
(``--help`` lists the faults; ``--drop-every 120 --drop-for 30`` schedules outages;
``--stats FILE`` writes the counters as JSON every second).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import smpp34

from smsrelay.providers.smpp import pdus
from smsrelay.providers.smpp.receipts import (
    STAT_CODES,
    TLV_MESSAGE_STATE,
    TLV_RECEIPTED_MESSAGE_ID,
    receipt_text,
)

ESME_RTHROTTLED = 0x58
ESME_RINVDSTADR = 0x0B
ESME_RSYSERR = 0x08

IdFormat = Literal["dec", "hex"]


@dataclass
class SmscConfig:
    """What the simulator does; every share is between 0 and 1."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port is chosen
    system_id: str = "SMSCSIM"
    receipt_delay: float = 0.05
    delivery_rate: float = 1.0
    receipts: bool = True
    receipt_tlvs: bool = True
    throttle_share: float = 0.0
    no_resp_share: float = 0.0
    resp_delay: float = 0.0
    missing_receipt_share: float = 0.0
    late_receipt_share: float = 0.0
    late_receipt_delay: float = 5.0
    duplicate_receipt_share: float = 0.0
    resp_ids: IdFormat = "dec"
    receipt_ids: IdFormat | None = None  # None: as answered
    reject_numbers: list[str] = field(default_factory=list)
    fail_numbers: list[str] = field(default_factory=list)
    silent_numbers: list[str] = field(default_factory=list)
    undeliverable_numbers: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class Submitted:
    """A ``submit_sm`` the simulator took."""

    message_id: str
    destination: str
    source: str
    text: str
    data_coding: int
    esm_class: int
    short_message: bytes
    concatenation: tuple[int, int, int] | None
    session_id: str
    payload: bytes | None


class SmscSimulator:
    """The running simulator; ``async with SmscSimulator(SmscConfig()) as smsc``."""

    def __init__(self, config: SmscConfig | None = None) -> None:
        self.config = config or SmscConfig()
        self.port = self.config.port or _free_port(self.config.host)
        self.submitted: list[Submitted] = []
        self.counts: Counter[str] = Counter()
        self.sessions: dict[str, smpp34.Esme] = {}
        self.held: list[smpp34.SubmitSmEvent] = []  # submits left unanswered on purpose
        self._random = random.Random(self.config.seed)
        self._server: smpp34.Server | None = None
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued: deque[dict[str, Any]] = deque()
        self._serial = 0

    @property
    def url(self) -> str:
        """Where to bind: ``host:port``."""
        return f"{self.config.host}:{self.port}"

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen and serve binds."""
        self._server = smpp34.Server(
            host=self.config.host, port=self.port, system_id=self.config.system_id
        )
        await self._server.start()
        self._loop = asyncio.create_task(self._serve(self._server))

    async def stop(self) -> None:
        """Drop every bind and stop listening."""
        await self._close_listener()
        for esme in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await esme.unbind()
        self.sessions.clear()
        for task in list(self._tasks):
            task.cancel()
        self.held.clear()

    async def _close_listener(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
            self._loop = None
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.stop()
            self._server = None

    async def drop_binds(self) -> None:
        """Unbind every ESME (they may bind again at once)."""
        self.counts["dropped"] += len(self.sessions)
        for esme in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await esme.unbind()

    async def outage(self, seconds: float) -> None:
        """Drop every bind and refuse new ones for ``seconds``."""
        await self._close_listener()
        await self.drop_binds()
        await asyncio.sleep(seconds)
        await self.start()

    def answer_held(self) -> None:
        """Answer the submits left unanswered so far (a late ``submit_sm_resp``)."""
        for event in self.held:
            event.accept(self._next_id())
        self.held.clear()

    # -- serving --------------------------------------------------------------------------

    async def _serve(self, server: smpp34.Server) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
                self.counts["binds"] += 1
                if event.can_receive:
                    self._spawn(self._flush())
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)
                self.counts["unbinds"] += 1
            else:
                self._on_submit(event)

    def _on_submit(self, event: smpp34.SubmitSmEvent) -> None:
        cfg, to = self.config, "+" + event.destination_addr
        self.counts["submit_sm"] += 1
        if to in cfg.silent_numbers or self._chance(cfg.no_resp_share):
            self.counts["unanswered"] += 1
            self.held.append(event)
        elif to in cfg.reject_numbers:
            event.reject(ESME_RINVDSTADR)
        elif to in cfg.fail_numbers:
            event.reject(ESME_RSYSERR)
        elif self._chance(cfg.throttle_share):
            self.counts["throttled"] += 1
            event.reject(ESME_RTHROTTLED)
        elif cfg.resp_delay:
            self._spawn(self._accept_later(event))
        else:
            self._accept(event)

    async def _accept_later(self, event: smpp34.SubmitSmEvent) -> None:
        await asyncio.sleep(self.config.resp_delay)
        self._accept(event)

    def _accept(self, event: smpp34.SubmitSmEvent) -> None:
        serial = self._next_serial()
        message_id = _format(serial, self.config.resp_ids)
        event.accept(message_id)
        self.counts["accepted"] += 1
        self.submitted.append(_record(event, message_id))
        if self.config.receipts and not self._chance(self.config.missing_receipt_share):
            self._spawn(self._receipt(event, serial))

    async def _receipt(self, event: smpp34.SubmitSmEvent, serial: int) -> None:
        cfg = self.config
        delay = cfg.receipt_delay
        if self._chance(cfg.late_receipt_share):
            delay += cfg.late_receipt_delay
        await asyncio.sleep(delay)
        delivered = ("+" + event.destination_addr) not in cfg.undeliverable_numbers and (
            self._random.random() < cfg.delivery_rate
        )
        stat = "DELIVRD" if delivered else "UNDELIV"
        reported = _format(serial, cfg.receipt_ids or cfg.resp_ids)
        tlvs = []
        if cfg.receipt_tlvs:
            tlvs = [
                smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, reported.encode() + b"\x00"),
                smpp34.Tlv(TLV_MESSAGE_STATE, bytes([STAT_CODES[stat]])),
            ]
        pdu = {
            "session_id": event.session_id,
            "destination_addr": event.source_addr,
            "source_addr": event.destination_addr,
            "esm_class": 0x04,
            "short_message": receipt_text(reported, stat, "000" if delivered else "001").encode(),
            "tlvs": tlvs,
        }
        copies = 2 if self._chance(cfg.duplicate_receipt_share) else 1
        for _ in range(copies):
            self._queued.append(pdu)
        self.counts[f"receipt_{stat}"] += 1
        await self._flush()

    async def _flush(self) -> None:
        while self._queued:
            pdu = self._queued.popleft()
            esme = self._receiver(pdu["session_id"])
            if esme is None:
                self._queued.appendleft(pdu)
                return
            fields = {k: v for k, v in pdu.items() if k != "session_id"}
            try:
                await esme.deliver_sm(**fields)
                self.counts["deliver_sm"] += 1
            except Exception:
                self.sessions.pop(esme.session_id, None)
                self._queued.appendleft(pdu)
                return

    def _receiver(self, session_id: str) -> smpp34.Esme | None:
        same = self.sessions.get(session_id)
        if same is not None and same.can_receive:
            return same
        return next((e for e in self.sessions.values() if e.can_receive), None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _chance(self, share: float) -> bool:
        return share > 0 and self._random.random() < share

    def _next_serial(self) -> int:
        self._serial += 1
        return 0x10000 + self._serial

    def _next_id(self) -> str:
        return _format(self._next_serial(), self.config.resp_ids)

    def stats(self) -> dict[str, Any]:
        """The counters, and how many distinct messages (recipient + text) were taken."""
        unique = {(s.destination, s.text) for s in self.submitted}
        return {**self.counts, "distinct_texts": len(unique), "bound": len(self.sessions)}


def _record(event: smpp34.SubmitSmEvent, message_id: str) -> Submitted:
    concat, octets = pdus.split_udh(event.short_message, event.esm_class)
    payload = next((t.value for t in event.tlvs if t.tag == 0x0424), None)
    text = pdus.decode(payload if payload is not None else octets, event.data_coding)
    return Submitted(
        message_id=message_id,
        destination="+" + event.destination_addr,
        source=event.source_addr,
        text=text,
        data_coding=event.data_coding,
        esm_class=event.esm_class,
        short_message=event.short_message,
        concatenation=concat,
        session_id=event.session_id,
        payload=payload,
    )


def _format(serial: int, form: IdFormat) -> str:
    return format(serial, "x") if form == "hex" else str(serial)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smsrelay.providers.smsc_sim")
    defaults = SmscConfig()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, list):
            parser.add_argument(flag, nargs="*", default=[])
        elif isinstance(value, bool):
            parser.add_argument(
                flag, type=lambda v: v.lower() in {"1", "true", "yes"}, default=value
            )
        elif value is None:
            parser.add_argument(flag, default=None)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--drop-every", type=float, default=0.0, help="outage period, s")
    parser.add_argument("--drop-for", type=float, default=0.0, help="outage length, s")
    parser.add_argument("--stats", type=Path, default=None, help="write counters here")
    parser.add_argument("--stats-interval", type=float, default=1.0, help="s between writes")
    return parser


async def _main(argv: list[str] | None = None) -> None:
    args = vars(_parser().parse_args(argv))
    drop_every, drop_for, stats = args.pop("drop_every"), args.pop("drop_for"), args.pop("stats")
    interval = args.pop("stats_interval")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SmscSimulator(SmscConfig(**args)) as smsc:
        print(json.dumps({"listening": smsc.url}), flush=True)
        next_drop = loop.time() + drop_every if drop_every else None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stats is not None:
                _write(stats, smsc.stats())
            if next_drop is not None and loop.time() >= next_drop:
                smsc.counts["outages"] += 1
                if stats is not None:
                    _write(stats, {**smsc.stats(), "down": True})
                await smsc.outage(drop_for)
                next_drop = loop.time() + drop_every
        if stats is not None:
            _write(stats, smsc.stats())


def _write(path: Path, stats: dict[str, Any]) -> None:
    # Replace in one step so a reader never sees half a file.
    part = path.with_suffix(".part")
    part.write_text(json.dumps(stats))
    part.replace(path)


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until SIGTERM or SIGINT."""
    asyncio.run(_main(argv))


if __name__ == "__main__":
    main()
