"""Bulk yields to OTPs inside one worker process.

A separate queue gets an OTP off the broker at once, but in the worker it still shares
the event loop and the store's group commits with hundreds of bulk sends. While any
OTP is in flight, a bulk delivery that has not started waits (at most ``max_hold``
seconds, so a flood of OTPs slows bulk but never stops it); bulk already under way
finishes normally.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

# Long enough to let an OTP through a busy worker, short enough that an OTP flood
# (pumping) cannot stall bulk.
MAX_HOLD = 1.0


class LaneGate:
    """Counts OTPs in flight; bulk waits for none (bounded by ``max_hold``)."""

    def __init__(self, max_hold: float = MAX_HOLD) -> None:
        self.max_hold = max_hold
        self._otps = 0
        self._clear = asyncio.Event()
        self._clear.set()

    @contextlib.asynccontextmanager
    async def otp(self) -> AsyncIterator[None]:
        """Hold the gate for the duration of one OTP delivery."""
        self._otps += 1
        self._clear.clear()
        try:
            yield
        finally:
            self._otps -= 1
            if self._otps == 0:
                self._clear.set()

    async def bulk(self) -> None:
        """Return once no OTP is in flight, or after ``max_hold`` seconds."""
        if self._clear.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._clear.wait(), timeout=self.max_hold)
