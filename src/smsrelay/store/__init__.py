"""The message store: interface (``Store``), SQL implementation, migrations."""

from __future__ import annotations

from smsrelay.store.base import (
    Acceptance,
    AttemptBill,
    AttemptRecord,
    Claim,
    MessageRecord,
    Store,
)
from smsrelay.store.migrate import upgrade
from smsrelay.store.sql import SqlStore, make_engine

__all__ = [
    "Acceptance",
    "AttemptBill",
    "AttemptRecord",
    "Claim",
    "MessageRecord",
    "SqlStore",
    "Store",
    "make_engine",
    "upgrade",
]
