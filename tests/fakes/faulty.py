"""A Twilio fake that misbehaves on demand: slow answers, hangs and failures.

For fault-injection tests (tests/faults/). It is ``TwilioFake`` (the real Twilio wire
format on loopback) plus knobs that can be turned while workers send to it::

    async with FaultyTwilio(latency=0.2, seed=7) as fake:
        fake.hang_ratio = 0.05        # 5 % of requests never answer (until release())
        fake.fail_ratio = 0.1         # 10 % answer 503 (transient)
        fake.hold()                   # from now on every request waits ...
        fake.release()                # ... until this

Every request is counted per message id on arrival (``arrivals``), before any delay,
hang or failure, and again in ``refused`` when it is answered with an error:
``accepted(id)`` counts the requests the provider may have taken (an answer that never
reached the worker does not make a send undone), the count duplicates are judged by.
The id is read from the body, which the tests write as ``"<text> [<id>]"``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.twilio import TwilioFake, _error

_ID = re.compile(r"\[([A-Za-z0-9._:-]{1,64})\]$")


def body_for(message_id: str, text: str = "code") -> str:
    """A message body that carries its id where ``FaultyTwilio`` reads it."""
    return f"{text} [{message_id}]"


@dataclass
class FaultyTwilio(TwilioFake):
    """``TwilioFake`` with latency, hangs and failures; see the module docstring."""

    hang_ratio: float = 0.0
    fail_ratio: float = 0.0
    seed: int = 0
    flaky: Counter[str] = field(default_factory=Counter)
    arrivals: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    _gate: asyncio.Event | None = field(default=None, init=False, repr=False)
    _hangs: asyncio.Event | None = field(default=None, init=False, repr=False)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def fail_first(self, to: str, times: int = 1) -> None:
        """Answer the next ``times`` sends to ``to`` with a 503, then accept."""
        self.flaky[to.lstrip("+")] += times

    def hold(self) -> None:
        """Make every request from now on wait until ``release()``."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Let held and hanging requests be answered (normally), and stop holding."""
        if self._gate is not None:
            self._gate.set()
        self._gate = None
        self.release_hangs()

    @property
    def waiting(self) -> int:
        """Requests received but not answered yet."""
        return sum(self.arrivals.values()) - sum(self.answered.values())

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        found = _ID.search(form.get("Body", ""))
        message_id = found.group(1) if found else ""
        self.arrivals[message_id] += 1
        try:
            response = await self._misbehave(request, body, form)
        finally:
            self.answered[message_id] += 1
        if response.status >= 400:
            self.refused[message_id] += 1
        return response

    def accepted(self, message_id: str) -> int:
        """Requests for ``message_id`` the provider may have taken: all but those it refused."""
        return self.arrivals[message_id] - self.refused[message_id]

    async def _misbehave(
        self, request: web.Request, body: bytes, form: dict[str, str]
    ) -> web.Response:
        hang = self._random.random() < self.hang_ratio
        fail = self._random.random() < self.fail_ratio
        number = form.get("To", "").lstrip("+")
        if self.flaky[number] > 0:
            self.flaky[number] -= 1
            fail = True
        if self.latency:
            await asyncio.sleep(self.latency)
        gate = self._gate
        if gate is None and hang:
            gate = self._gate_for_hangs()
        if gate is not None:
            await gate.wait()
        if fail:
            response = _error(503, 20500, "Service unavailable (injected)")
            return self.record(request, body, form, response)
        return self.record(request, body, form, self._answer(request, form))

    def _gate_for_hangs(self) -> asyncio.Event:
        # Hung requests share one event so that release() frees them all.
        if self._hangs is None:
            self._hangs = asyncio.Event()
        return self._hangs

    def release_hangs(self) -> None:
        """Answer every request that is hanging."""
        if self._hangs is not None:
            self._hangs.set()
            self._hangs = None
