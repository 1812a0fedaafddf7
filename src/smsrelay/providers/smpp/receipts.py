"""Delivery receipts on an SMPP link: ``deliver_sm`` with the receipt ``esm_class``.

A receipt names the part's message id in the ``receipted_message_id`` TLV (SMPP 3.4
§5.3.2.12) and/or in its text, the de-facto format of SMPP 3.4 Appendix B::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E text:...   (one line)

Its state comes from the ``message_state`` TLV (§5.3.2.35) when present, else ``stat``:

=================  ====================  ===========
message_state      stat                  normalised
=================  ====================  ===========
2 DELIVERED        DELIVRD               delivered
3 EXPIRED          EXPIRED               undelivered
5 UNDELIVERABLE    UNDELIV               undelivered
4 DELETED          DELETED               failed
8 REJECTED         REJECTD               failed
1 ENROUTE          ENROUTE               pending
6 ACCEPTED         ACCEPTD               pending
7 UNKNOWN          UNKNOWN               pending
=================  ====================  ===========

Parsing is bounded: only the first ``MAX_TEXT`` octets are read, with one linear regex
per field.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from smsrelay.models import ReceiptStatus

MAX_TEXT = 512
# SMPP 3.4 §5.3.2 tags (smpp34 exports them, but not in its stubs).
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427
RECEIPT_ESM_MASK = 0x3C
RECEIPT_TYPES = frozenset({0x04, 0x08, 0x20})  # SMSC receipt, SME ack, intermediate

STATES: dict[int, tuple[str, ReceiptStatus]] = {
    1: ("ENROUTE", ReceiptStatus.PENDING),
    2: ("DELIVRD", ReceiptStatus.DELIVERED),
    3: ("EXPIRED", ReceiptStatus.UNDELIVERED),
    4: ("DELETED", ReceiptStatus.FAILED),
    5: ("UNDELIV", ReceiptStatus.UNDELIVERED),
    6: ("ACCEPTD", ReceiptStatus.PENDING),
    7: ("UNKNOWN", ReceiptStatus.PENDING),
    8: ("REJECTD", ReceiptStatus.FAILED),
}
STATS = {stat: status for stat, status in STATES.values()}
STAT_CODES = {stat: code for code, (stat, _) in STATES.items()}

_ID = re.compile(rb"\bid:([0-9A-Za-z-]{1,64})")
_STAT = re.compile(rb"\bstat:([A-Za-z]{1,16})")
_ERR = re.compile(rb"\berr:([0-9A-Za-z]{1,8})")
_DONE = re.compile(rb"\bdone date:(\d{10,12})")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One receipt as the link read it, before it is tied to a message."""

    message_id: str
    status: ReceiptStatus
    stat: str
    error_code: str | None
    done_at: datetime | None
    digest: str


def is_receipt(esm_class: int) -> bool:
    """True when a ``deliver_sm``'s ``esm_class`` says it carries a delivery receipt."""
    return esm_class & RECEIPT_ESM_MASK in RECEIPT_TYPES


def parse(
    text: bytes, receipted_id: str | None, message_state: int | None
) -> DeliveryReport | None:
    """The report in a receipt's text and TLVs, or None when it names no message id."""
    head = text[:MAX_TEXT]
    message_id = receipted_id or _group(_ID, head)
    if not message_id:
        return None
    stat = (_group(_STAT, head) or "").upper()
    if message_state in STATES:
        stat, status = STATES[message_state]
    else:
        status = STATS.get(stat, ReceiptStatus.PENDING)
    err = _group(_ERR, head)
    error_code = err if err and err.strip("0") else None
    digest = hashlib.sha256(b"%s|%s|%s" % (message_id.encode(), stat.encode(), head)).hexdigest()
    return DeliveryReport(message_id, status, stat or "UNKNOWN", error_code, _done(head), digest)


def receipt_text(message_id: str, stat: str, err: str = "000", when: datetime | None = None) -> str:
    """A receipt's text in the Appendix B format (for the simulator)."""
    stamp = (when or datetime.now(UTC)).strftime("%y%m%d%H%M")
    dlvrd = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{stamp} done date:{stamp}"
        f" stat:{stat} err:{err} text:"
    )


def _group(pattern: re.Pattern[bytes], text: bytes) -> str | None:
    found = pattern.search(text)
    return found.group(1).decode("ascii") if found else None


def _done(text: bytes) -> datetime | None:
    found = _DONE.search(text)
    if not found:
        return None
    digits = found.group(1).decode()
    try:
        return datetime.strptime(
            digits, "%y%m%d%H%M%S" if len(digits) == 12 else "%y%m%d%H%M"
        ).replace(tzinfo=UTC)
    except ValueError:
        return None


def id_aliases(message_id: str) -> list[str]:
    """The forms an SMSC may use for ``message_id`` in a receipt: as is, hex ↔ decimal.

    Many SMSCs answer ``submit_sm`` with a hex id and report it in decimal (or the
    reverse); leading zeros and case are not significant in either form.
    """
    raw = message_id.strip().lower()
    forms = [raw]
    if re.fullmatch(r"[0-9a-f]{1,32}", raw):
        forms.append(str(int(raw, 16)))
    if re.fullmatch(r"[0-9]{1,39}", raw):
        forms.append(format(int(raw), "x"))
    return forms


class PartRef(NamedTuple):
    """The message and part a part's message id belongs to."""

    message_id: str
    provider_message_id: str
    part: int | None
    parts: int | None


class PartIds:
    """Part message ids → the message and part they belong to, the latest ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, PartRef] = OrderedDict()

    def add(self, part: PartRef) -> None:
        # The id as answered goes in last so that it wins over another id's twin.
        for key in reversed(id_aliases(part.provider_message_id)):
            self._ids[key] = part
            self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def find(self, reported: str) -> PartRef | None:
        for key in id_aliases(reported):
            if key in self._ids:
                return self._ids[key]
        return None
