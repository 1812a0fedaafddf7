"""Segment-count cases built from the rules of 3GPP TS 23.038, each with its expected answer.

Expectations come from closed formulas over the rules, not from the code under test:
a body of ``u`` units fits one part when ``u <= single`` (160 septets, 70 UTF-16 units),
else ``ceil(u / multi)`` parts (153, 67) — plus one wasted unit each time a 2-unit
character (an extension-table escape pair, a surrogate pair) would straddle a boundary,
since neither is ever split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from math import ceil

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€\f"
GSM7, UCS2 = "gsm7", "ucs2"
LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}
# Boundary lengths: around one part, and around n concatenated parts, n = 2..10.
BOUNDARY_PARTS = range(2, 11)


@dataclass(frozen=True)
class Case:
    """One body and what 23.038 says it is sent as."""

    name: str
    body: str
    encoding: str
    parts: int


def plain(units: int, encoding: str) -> int:
    """Parts for ``units`` one-unit characters."""
    single, multi = LIMITS[encoding]
    return 1 if units <= single else ceil(units / multi)


def one_wide(before: int, after: int, encoding: str) -> int:
    """Parts for ``before`` one-unit characters, one two-unit character, ``after`` more."""
    single, multi = LIMITS[encoding]
    total = before + 2 + after
    if total <= single:
        return 1
    straddles = before % multi == multi - 1
    return ceil((total + straddles) / multi)


def all_wide(count: int, encoding: str) -> int:
    """Parts for ``count`` two-unit characters: a part of an odd capacity wastes one unit."""
    single, multi = LIMITS[encoding]
    return 1 if 2 * count <= single else ceil(count / (multi // 2))


def _lengths(encoding: str) -> list[int]:
    single, multi = LIMITS[encoding]
    around = {1, single - 1, single, single + 1, multi - 1, multi, multi + 1}
    for n in BOUNDARY_PARTS:
        around |= {n * multi - 1, n * multi, n * multi + 1}
    return sorted(length for length in around if length <= 1600)


def _gsm_plain() -> list[Case]:
    cycled = GSM_BASIC * 20
    cases = [Case(f"gsm a*{n}", "a" * n, GSM7, plain(n, GSM7)) for n in _lengths(GSM7)]
    cases += [Case(f"gsm alphabet*{n}", cycled[:n], GSM7, plain(n, GSM7)) for n in _lengths(GSM7)]
    return cases


def _each_basic_character() -> list[Case]:
    cases = []
    for char in GSM_BASIC:
        for n in (1, 160, 161):
            cases.append(Case(f"gsm U+{ord(char):04X}*{n}", char * n, GSM7, plain(n, GSM7)))
    return cases


def _each_extension_character() -> list[Case]:
    cases = []
    for char in GSM_EXTENSION:
        for n in (1, 80, 81, 76 * 2, 76 * 2 + 1):
            cases.append(Case(f"ext U+{ord(char):04X}*{n}", char * n, GSM7, all_wide(n, GSM7)))
    return cases


def _extension_at_boundaries() -> list[Case]:
    cases = []
    extension = GSM_EXTENSION * 200
    k = 0
    positions = {*range(150, 162)} | {n * 153 + d for n in range(1, 6) for d in (-2, -1, 0, 1)}
    for before in sorted(positions):
        for total in (159, 160, 161, 162, 306, 307, 308, 460, 765, 766):
            after = total - 2 - before
            if after < 0:
                continue
            char = extension[k]
            k += 1
            body = "a" * before + char + "a" * after
            name = f"ext U+{ord(char):04X} after {before} of {total} septets"
            cases.append(Case(name, body, GSM7, one_wide(before, after, GSM7)))
    return cases


def _ucs2_plain() -> list[Case]:
    cases = [Case(f"ucs2 ж*{n}", "ж" * n, UCS2, plain(n, UCS2)) for n in _lengths(UCS2)]
    # One non-GSM character makes a GSM body UCS-2: every character is then one unit.
    for n in _lengths(UCS2):
        body = ("a" * n)[: n - 1] + "ж" if n > 1 else "ж"
        cases.append(Case(f"ucs2 a*{n - 1}+ж", body, UCS2, plain(n, UCS2)))
    return cases


def _extension_in_ucs2() -> list[Case]:
    # In UCS-2 an extension character is one UTF-16 unit, not an escape pair (the
    # miscount TwilioDevEd's calculator once had).
    cases = []
    for char in GSM_EXTENSION:
        for n in (68, 69, 70, 133, 134):
            cases.append(Case(f"ucs2 ж+U+{ord(char):04X}*{n}", "ж" + char * n, UCS2, plain(n + 1, UCS2)))
    return cases


def _surrogates() -> list[Case]:
    cases = []
    for emoji in ("😀", "𝄞", "🎉"):
        for n in (1, 33, 34, 35, 36, 66, 67, 99, 100):
            cases.append(Case(f"pairs U+{ord(emoji):X}*{n}", emoji * n, UCS2, all_wide(n, UCS2)))
    positions = {*range(64, 71)} | {n * 67 + d for n in range(1, 6) for d in (-2, -1, 0, 1)}
    for before in sorted(positions):
        for total in (69, 70, 71, 72, 134, 135, 136, 201, 335):
            after = total - 2 - before
            if after < 0:
                continue
            body = "a" * before + "😀" + "a" * after
            name = f"pair after {before} of {total} units"
            cases.append(Case(name, body, UCS2, one_wide(before, after, UCS2)))
    return cases


def _mixed() -> list[Case]:
    # Hand-counted: each comment gives the units.
    return [
        Case("crlf", "line one\r\nline two", GSM7, 1),  # 18
        Case("form feed 80", "\f" * 80, GSM7, 1),  # 160
        Case("otp", "Your code is 493021. It expires in 10 min. Don't share it.", GSM7, 1),
        Case("euro price 160", "Total: " + "€" * 76 + "x", GSM7, 1),  # 7 + 152 + 1 = 160
        Case("euro price 161", "Total: " + "€" * 77, GSM7, 2),  # 161
        Case("gsm greek 161", "ΔΦΓΛΩΠΨΣΘΞ" * 16 + "Δ", GSM7, 2),
        Case("ucs2 curly quote", "a" * 69 + "’", UCS2, 1),
        Case("ucs2 curly quote 71", "a" * 70 + "’", UCS2, 2),
        Case("ucs2 cjk 70", "漢" * 70, UCS2, 1),
        Case("ucs2 arabic 71", "ع" * 71, UCS2, 2),
        Case("ucs2 pair last 70", "a" * 68 + "😀", UCS2, 1),  # 70
        Case("ucs2 pair last 71", "a" * 69 + "😀", UCS2, 2),  # 71
        Case("empty", "", GSM7, 1),
    ]


def cases() -> list[Case]:
    """Every rule-built case (more than 500)."""
    return [
        *_gsm_plain(),
        *_each_basic_character(),
        *_each_extension_character(),
        *_extension_at_boundaries(),
        *_ucs2_plain(),
        *_extension_in_ucs2(),
        *_surrogates(),
        *_mixed(),
    ]


# Characters whose clusters the calculator could keep together are left out on purpose:
# that is a pinned disagreement (test_calculator.py), not something to rediscover.
_RANDOM_POOL = GSM_BASIC + GSM_EXTENSION * 4 + "жЖπ漢ع’“”—…€" + "😀🎉𝄞"


def random_bodies(count: int, seed: int = 23038) -> list[str]:
    """Seeded bodies around part boundaries: GSM-7 only, or with some UCS-2 characters."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        pool = GSM_BASIC + GSM_EXTENSION if rng.random() < 0.5 else _RANDOM_POOL
        length = rng.choice([rng.randint(1, 1600), rng.randint(60, 80), rng.randint(140, 170)])
        bodies.append("".join(rng.choice(pool) for _ in range(length)))
    return bodies
