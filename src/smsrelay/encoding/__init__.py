"""How a body is sent and billed: exact SMS parts (``segments``), smart encoding (``smart``)."""

from __future__ import annotations

from smsrelay.encoding.segments import Encoding, Part, Segmentation, count, is_gsm7, segment
from smsrelay.encoding.smart import Encoded, encode, outgoing, substitute

__all__ = [
    "Encoded",
    "Encoding",
    "Part",
    "Segmentation",
    "count",
    "encode",
    "is_gsm7",
    "outgoing",
    "segment",
    "substitute",
]
