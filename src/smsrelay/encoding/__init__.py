"""How a body is sent and billed: exact SMS parts (``segments``)."""

from __future__ import annotations

from smsrelay.encoding.segments import Encoding, Part, Segmentation, count, is_gsm7, segment

__all__ = [
    "Encoding",
    "Part",
    "Segmentation",
    "count",
    "is_gsm7",
    "segment",
]
