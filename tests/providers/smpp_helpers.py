"""Shared pieces of the SMPP tests: settings pointing at a simulator, and a recording sink."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from smsrelay.errors import StaleReceipt
from smsrelay.models import Receipt
from smsrelay.providers.smpp import SmppSettings
from smsrelay.providers.smsc_sim import SmscSimulator


def smpp_settings(smsc: SmscSimulator, **overrides: Any) -> SmppSettings:
    """Settings binding to ``smsc`` with short timers, overridable."""
    fields: dict[str, Any] = {
        "host": smsc.config.host,
        "port": smsc.port,
        "system_id": "smsrelay",
        "password": SecretStr("secret"),
        "sender": "Relay",
        "timeout": 5.0,
        "reconnect_initial": 0.1,
        "reconnect_max": 0.5,
        "enquire_link_interval": 1.0,
        "receipt_match_wait": 0.5,
        **overrides,
    }
    return SmppSettings(**fields)


@dataclass
class RecordingSink:
    """A ReceiptSink that keeps what it was given, refusing replays as the store does.

    A digest seen before is refused whole; a receipt equal to one kept is dropped.
    """

    receipts: list[Receipt] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)
    replays: int = 0

    async def deliver(self, provider: str, digest: str, receipts: Sequence[Receipt]) -> None:
        if digest in self.digests:
            self.replays += len(receipts)
            raise StaleReceipt("seen before")
        self.digests.add(digest)
        for receipt in receipts:
            if receipt in self.receipts:
                self.replays += 1
            else:
                self.receipts.append(receipt)
