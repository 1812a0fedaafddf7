"""Cross-check with an independent implementation: Twilio's sms-segments-calculator (npm).

It is not trusted blindly. Where it departs from 3GPP TS 23.038 / 23.040 the
disagreement is pinned below with its reason, and every other case must agree on the
encoding, the number of parts and the text of each part.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from smsrelay.encoding import segment
from tests.encoding.corpus import cases, random_bodies

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("segments_calculator.js")
PACKAGE = ROOT / "node_modules" / "sms-segments-calculator"
NAMES = {"GSM-7": "gsm7", "UCS-2": "ucs2"}

# The calculator keeps a whole grapheme cluster (an emoji with a skin tone, a flag, a
# letter with a combining accent) in one part. 23.038/23.040 know nothing of graphemes:
# a part boundary may fall between code points of a cluster, only a UTF-16 surrogate pair
# is never split. Keeping clusters whole costs a part here, which we do not bill.
PINNED = {
    "skin tone across 67": ("a" * 65 + "👍🏽" + "a" * 65, 2, 3),
    "flag across 67": ("a" * 65 + "🇬🇧" + "a" * 65, 2, 3),
    "combining accent across 67": ("a" * 66 + "e\u0301" + "a" * 66, 2, 3),
    "zwj family across 134": ("a" * 130 + "👩‍👩‍👧" + "a" * 60, 3, 4),
}


def _calculator(bodies: list[str]) -> list[dict[str, object]]:
    if shutil.which("node") is None or not PACKAGE.is_dir():
        reason = "sms-segments-calculator is missing: run `npm ci` (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    answers: list[dict[str, object]] = json.loads(done.stdout)
    return answers


def _ours(body: str) -> dict[str, object]:
    result = segment(body)
    return {
        "encoding": result.encoding.value,
        "parts": result.count,
        "texts": [part.text for part in result.parts],
    }


def _theirs(answer: dict[str, object]) -> dict[str, object]:
    return {**answer, "encoding": NAMES[str(answer["encoding"])]}


def test_corpus_agrees_with_calculator() -> None:
    """Every rule-built corpus body gets the calculator's encoding, part count and part texts."""
    bodies = [case.body for case in cases()]
    answers = _calculator(bodies)
    disagreements = [b for b, a in zip(bodies, answers, strict=True) if _ours(b) != _theirs(a)]
    assert disagreements == []


def test_random_bodies_agree_with_calculator() -> None:
    """1000 seeded bodies (GSM-7, extension, UCS-2, emoji, near boundaries) agree too."""
    bodies = random_bodies(1000)
    answers = _calculator(bodies)
    disagreements = [b for b, a in zip(bodies, answers, strict=True) if _ours(b) != _theirs(a)]
    assert disagreements == []


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_grapheme_disagreement(name: str) -> None:
    """Where a grapheme cluster straddles a part boundary the calculator bills one part more; we follow 23.038."""
    body, ours, theirs = PINNED[name]
    (answer,) = _calculator([body])
    assert (segment(body).count, answer["parts"]) == (ours, theirs)
