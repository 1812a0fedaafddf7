"""One bind to the SMSC, kept up for the life of the worker.

A ``Session`` connects, binds, reads what the SMSC sends (``deliver_sm``: the core acks
each one) and, when the bind is lost, binds again after a backoff that doubles up to
``reconnect_max``. ``enquire_link`` is sent by smpp34's core on its own timer; the
session also asks the core every ``enquire_link_interval`` whether the link is alive,
so a peer that vanished without closing the socket is noticed.

A ``Bind`` is what the provider sends through: one transceiver session, or a
transmitter session for ``submit_sm`` and a receiver session for receipts. It keeps the
window (outstanding ``submit_sm``), the throughput limit and the back-pressure delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import smpp34

from smsrelay.logging import get_logger

if TYPE_CHECKING:
    from smsrelay.providers.smpp.provider import SmppSettings

log = get_logger(__name__)

# Bind answers that no retry can fix until the configuration changes.
AUTH_STATUSES = {0x0D: "ESME_RBINDFAIL", 0x0E: "ESME_RINVPASWD", 0x0F: "ESME_RINVSYSID"}
# smpp34 1.5 does not pass a refused bind's command_status on: the TCP connection is
# made and connect() fails with this text once connect_timeout_ms has passed.
BIND_UNANSWERED = "bind timed out"
_STATUS = re.compile(r"0x([0-9a-fA-F]{8})")

OnDeliver = Callable[[smpp34.DeliverSmEvent], Awaitable[None]]


def command_status(exc: BaseException) -> int | None:
    """The ``command_status`` an ``SmppError`` names (``"ESME_RINVPASWD (0x0000000e)"``)."""
    found = _STATUS.search(str(exc))
    return int(found.group(1), 16) if found else None


def _refusal(exc: BaseException) -> str | None:
    status = command_status(exc)
    if status in AUTH_STATUSES:
        return AUTH_STATUSES[status]
    return "bind-refused" if BIND_UNANSWERED in str(exc) else None


class Session:
    """One SMPP session of ``bind_type`` (``TRX``, ``TX`` or ``RX``) that rebinds itself."""

    def __init__(
        self, name: str, config: SmppSettings, bind_type: str, on_deliver: OnDeliver
    ) -> None:
        self.name = name
        self.config = config
        self.bind_type = bind_type
        self.on_deliver = on_deliver
        self.smsc: smpp34.Smsc | None = None
        self.client: smpp34.Client | None = None
        # Why the last bind failed when the SMSC refused it (not for a refused connection).
        self.bind_error: str | None = None
        self.bound = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """True while the session is bound."""
        return self.smsc is not None

    def start(self) -> None:
        """Bind in the background, and again whenever the bind is lost."""
        self._task = asyncio.create_task(self._run(), name=f"smpp-{self.name}-{self.bind_type}")

    async def _run(self) -> None:
        delay = self.config.reconnect_initial
        while not self._closing:
            if await self._bind():
                delay = self.config.reconnect_initial
                await self._serve()
            if self._closing:
                return
            # A refused bind will not be accepted by asking again soon.
            await asyncio.sleep(self.config.reconnect_max if self.bind_error else delay)
            delay = min(delay * 2, self.config.reconnect_max)

    async def _bind(self) -> bool:
        cfg = self.config
        client = smpp34.Client(
            host=cfg.host,
            port=cfg.port,
            system_id=cfg.system_id,
            password=cfg.password.get_secret_value(),
            bind_type=self.bind_type,
            system_type=cfg.system_type,
            tls=cfg.tls,
            window_size=cfg.window,
            connect_timeout_ms=int(cfg.timeout * 1000),
        )
        try:
            smsc = await client.connect()
        except Exception as exc:  # smpp34 raises SmppError; OSError-like text inside
            self.bind_error = _refusal(exc)
            log.warning(
                "smpp_bind_failed", provider=self.name, bind=self.bind_type, error=str(exc)[:200]
            )
            with contextlib.suppress(Exception):
                await client.stop()
            return False
        self.client, self.smsc, self.bind_error = client, smsc, None
        self.bound.set()
        log.info("smpp_bound", provider=self.name, bind=self.bind_type)
        return True

    async def _serve(self) -> None:
        smsc, client = self.smsc, self.client
        assert smsc is not None and client is not None
        watchdog = asyncio.create_task(self._watch(client))
        try:
            while True:
                event = await smsc.next()
                if isinstance(event, smpp34.Disconnected):
                    break
                try:
                    await self.on_deliver(event)
                except Exception as exc:  # one unreadable PDU must not cost the bind
                    log.warning(
                        "smpp_deliver_sm_unread", provider=self.name, error=type(exc).__name__
                    )
        finally:
            watchdog.cancel()
            self._lost()
            with contextlib.suppress(Exception):
                await client.stop()

    async def _watch(self, client: smpp34.Client) -> None:
        while True:
            await asyncio.sleep(self.config.enquire_link_interval)
            if not await client.is_alive() and self.smsc is not None:
                log.warning("smpp_link_dead", provider=self.name, bind=self.bind_type)
                with contextlib.suppress(Exception):
                    await client.stop()
                return

    def _lost(self) -> None:
        if self.smsc is not None and not self._closing:
            log.warning("smpp_bind_lost", provider=self.name, bind=self.bind_type)
        self.smsc = None
        self.bound.clear()

    async def close(self) -> None:
        """Unbind (the SMSC answers ``unbind_resp``) and stop rebinding."""
        self._closing = True
        smsc, client = self.smsc, self.client
        if smsc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smsc.unbind(), self.config.timeout)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.smsc = None


class Bind:
    """Where ``submit_sm`` goes: a transceiver, or a transmitter plus a receiver."""

    def __init__(self, name: str, config: SmppSettings, on_deliver: OnDeliver) -> None:
        self.config = config
        if config.bind_mode == "transceiver":
            self.tx = Session(name, config, "TRX", on_deliver)
            self.sessions = [self.tx]
        else:
            self.tx = Session(name, config, "TX", on_deliver)
            self.sessions = [self.tx, Session(name, config, "RX", on_deliver)]
        self.window = asyncio.Semaphore(config.window)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._next_slot = 0.0
        self._slow_until = 0.0
        self.backoff = config.throttle_backoff

    @property
    def up(self) -> bool:
        """True while ``submit_sm`` can go out on this bind."""
        return self.tx.up

    def start(self) -> None:
        """Bind every session in the background."""
        for session in self.sessions:
            session.start()

    async def pace(self) -> None:
        """Wait for the throughput limit and any back-pressure delay the SMSC asked for."""
        now = time.monotonic()
        rate = self.config.throughput
        slot = max(now, self._next_slot, self._slow_until)
        self._next_slot = slot + (1 / rate if rate else 0.0)
        if slot > now:
            await asyncio.sleep(slot - now)

    def slow_down(self) -> float:
        """Back-pressure: hold this bind's next sends; the delay doubles while it lasts."""
        delay = self.backoff
        self._slow_until = max(self._slow_until, time.monotonic() + delay)
        self.backoff = min(self.backoff * 2, self.config.throttle_backoff_max)
        return delay

    def relieved(self) -> None:
        """A submit went through: the back-pressure delay starts small again."""
        self.backoff = self.config.throttle_backoff

    async def submit(self, **fields: object) -> smpp34.SubmitSmResp:
        """One ``submit_sm`` within the window; raises what smpp34 raises, or TimeoutError."""
        smsc = self.tx.smsc
        if smsc is None:
            raise ConnectionError("not bound")
        async with self.window:
            self.in_flight += 1
            self.idle.clear()
            try:
                return await asyncio.wait_for(
                    smsc.submit_sm(**fields),  # type: ignore[arg-type]
                    self.config.timeout,
                )
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self.idle.set()

    async def close(self, grace: float) -> None:
        """Let the answers of in-flight ``submit_sm`` arrive (up to ``grace``), then unbind."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), grace)
        for session in self.sessions:
            await session.close()
