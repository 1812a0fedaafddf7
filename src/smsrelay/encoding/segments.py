"""How a body is split into SMS parts, exactly as 3GPP TS 23.038 / 23.040 define it.

The part count is what a carrier bills, so it is counted, not estimated:

- GSM-7 (the default alphabet, 23.038 §6.2.1): 160 septets in a single part, 153 per part
  once concatenated (the 6-octet concatenation header takes 7 septets). A character of the
  extension table (``^{}\\[~]|€`` and form feed) is an escape septet plus its own: 2
  septets, and the pair is never split across parts (the receiver would show the escape
  as a space and the next part would start with a stray character).
- UCS-2 (23.038 §6.2.3), used as soon as one character is outside GSM-7: 70 UTF-16 code
  units in a single part, 67 per part. A character outside the Basic Multilingual Plane
  (most emoji) is a surrogate pair, 2 units, and a pair is never split either.

National language shift tables (23.038 §6.2.1.2.4: Turkish, Spanish, Portuguese, Indian
scripts) are not used: providers send the default alphabet or UCS-2.

Parts are filled greedily, which is what every implementation does and gives the fewest
parts: a unit that does not fit in what is left of a part starts the next one. The split
parts are kept, for transports that send parts themselves (SMPP).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "Encoding",
    "Part",
    "Segmentation",
    "count",
    "is_gsm7",
    "segment",
]

# 23.038 §6.2.1, the default alphabet; 0x1B (escape) is not a character of its own.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# 23.038 §6.2.1.1, the default extension table: each costs escape + septet.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

_SINGLE = {"gsm7": 160, "ucs2": 70}
_CONCATENATED = {"gsm7": 153, "ucs2": 67}


class Encoding(StrEnum):
    """The data coding a body is sent with."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"

    @property
    def single_capacity(self) -> int:
        """Units (septets or UTF-16 code units) in a message of one part."""
        return _SINGLE[self.value]

    @property
    def part_capacity(self) -> int:
        """Units in each part of a concatenated message."""
        return _CONCATENATED[self.value]


@dataclass(frozen=True, slots=True)
class Part:
    """One part as sent: its text and the units it takes (septets or UTF-16 code units)."""

    text: str
    units: int

    @property
    def characters(self) -> int:
        """Unicode code points in this part."""
        return len(self.text)


@dataclass(frozen=True, slots=True)
class Segmentation:
    """A body's encoding and the parts it is sent (and billed) as."""

    encoding: Encoding
    parts: tuple[Part, ...]

    @property
    def count(self) -> int:
        """The number of parts: what the carrier bills."""
        return len(self.parts)

    @property
    def units(self) -> int:
        """Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole body."""
        return sum(part.units for part in self.parts)

    @property
    def capacity(self) -> int:
        """The most units each part could hold with this many parts."""
        return self.encoding.single_capacity if self.count == 1 else self.encoding.part_capacity


def is_gsm7(body: str) -> bool:
    """True when every character of ``body`` is in the GSM-7 default alphabet or its extension."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body)


def _unit_cost(char: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    # A lone surrogate (possible in a JSON string) is sent as the one unit it is.
    return 2 if ord(char) > 0xFFFF else 1


def segment(body: str) -> Segmentation:
    """Split ``body`` into the parts it is sent as. Linear in the length of ``body``."""
    encoding = Encoding.GSM7 if is_gsm7(body) else Encoding.UCS2
    costs = [_unit_cost(c, encoding) for c in body]
    total = sum(costs)
    if total <= encoding.single_capacity:
        return Segmentation(encoding, (Part(body, total),))
    return Segmentation(encoding, _split(body, costs, encoding.part_capacity))


def _split(body: str, costs: list[int], capacity: int) -> tuple[Part, ...]:
    parts: list[Part] = []
    start = used = 0
    for index, cost in enumerate(costs):
        # A character is split by no part boundary: it starts the next part instead.
        if used + cost > capacity:
            parts.append(Part(body[start:index], used))
            start, used = index, 0
        used += cost
    parts.append(Part(body[start:], used))
    return tuple(parts)


def count(body: str) -> int:
    """Number of parts a carrier bills for ``body``."""
    return segment(body).count
