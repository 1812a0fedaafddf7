"""How many SMS parts a body costs: GSM-7 (160/153) or UCS-2 (70/67)."""

from __future__ import annotations

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def is_gsm7(body: str) -> bool:
    """True when ``body`` fits the GSM-7 alphabet (else it goes as UCS-2 "unicode")."""
    return all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in body)


def count(body: str) -> int:
    """Number of parts a carrier bills for ``body``."""
    if is_gsm7(body):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in body)
        single, multi = 160, 153
    else:
        # UCS-2 counts UTF-16 code units: characters outside the BMP take two.
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)
