"""Smart encoding: look-alike characters replaced by GSM-7 ones so a body stays GSM-7.

One curly quote pasted from a word processor turns a 150-character GSM-7 message (one
part) into UCS-2 (three parts, three times the price). ``LOOKALIKES`` is a fixed table
after Twilio's published Smart Encoding list (as carried by its segment calculator,
``sms-segments-calculator``), less what would change meaning:

- combining marks (U+0302 circumflex, U+0303 tilde…): they belong to the letter before
  them, and ``n`` + U+0303 is ``ñ``, not ``n~``;
- fullwidth digits: digits are never rewritten, whatever their script (an OTP stays the
  code its sender wrote);
- control characters, which Twilio deletes: a body that carries them is not ours to edit.

General transliteration (unidecode, ICU) is not used: it also folds é, ñ, ü or Ø, which
GSM-7 has. URLs are left exactly as written (a link is an identifier, not prose).

``encode`` applies the table only when the result is all GSM-7 and costs no more parts
than the original (``…`` becomes three characters); otherwise the body goes as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smsrelay.encoding.segments import Encoding, Segmentation, segment
from smsrelay.models import BodyEncoding, SendRequest

__all__ = ["LOOKALIKES", "Encoded", "encode", "outgoing", "substitute"]

# No-break, en/em and other fixed-width spaces, narrow no-break, ideographic space.
_SPACES = "\u00a0" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"
_INVISIBLE = "\u200b\u200c\u2060\ufeff"  # zero-width space, non-joiner, word joiner, BOM

LOOKALIKES: dict[str, str] = {
    # Double quotes and primes.
    **dict.fromkeys("«»“”ʺˮ‟„❝❞〝〞＂″", '"'),
    # Single quotes, apostrophes, primes and accents used as apostrophes.
    **dict.fromkeys("‘’ʻˈʼʽʹ‛＇´ˊ`ˋ❛❜︐︑′", "'"),
    # Dashes, hyphens and bullets.
    **dict.fromkeys("‐‑‒–—―⁃﹣－⎼⎽•", "-"),
    **dict.fromkeys(_SPACES, " "),
    "\t": " ",
    "\u2028": " ",  # line separator
    "\u2029": " ",  # paragraph separator
    **dict.fromkeys(_INVISIBLE, ""),
    "…": "...",
    "‼": "!!",
    "‹": "<",
    "›": ">",
    "÷": "/",
    "¼": "1/4",
    "½": "1/2",
    "¾": "3/4",
    **dict.fromkeys("⧸⁄∕／", "/"),
    **dict.fromkeys("⧹⧵﹨＼", "\\"),
    **dict.fromkeys("＿‗", "_"),
    **dict.fromkeys("∣｜⎸⎹⏐⎜⎟", "|"),
    **dict.fromkeys("﹫＠", "@"),
    **dict.fromkeys("﹩＄", "$"),
    **dict.fromkeys("ǃ︕﹗！", "!"),
    **dict.fromkeys("﹟＃", "#"),
    **dict.fromkeys("﹪％", "%"),
    **dict.fromkeys("﹠＆", "&"),
    **dict.fromkeys("‚﹐﹑，､、", ","),
    **dict.fromkeys("❨❪﹙（⟮⦅", "("),
    **dict.fromkeys("❩❫﹚）⟯⦆", ")"),
    **dict.fromkeys("⁎∗⊛✢✣✤✥✱✲✳✺✻✼✽❃❉❊❋⧆﹡＊", "*"),
    **dict.fromkeys("˖﹢＋", "+"),
    **dict.fromkeys("。﹒．｡", "."),
    **dict.fromkeys("ː˸⦂꞉︓：", ":"),
    **dict.fromkeys("⁏︔﹔；", ";"),
    **dict.fromkeys("﹤＜", "<"),
    **dict.fromkeys("꞊﹦＝", "="),
    **dict.fromkeys("﹥＞", ">"),
    **dict.fromkeys("︖﹖？", "?"),
    **dict.fromkeys("ˆ＾", "^"),
    **dict.fromkeys("❴﹛｛", "{"),
    **dict.fromkeys("❵﹜｝", "}"),
    "［": "[",
    "］": "]",
    **dict.fromkeys("˜˷∼～", "~"),
    # Fullwidth and small-capital Latin letters: not letters GSM-7 has, so fair to fold.
    **{chr(0xFF21 + i): chr(0x41 + i) for i in range(26)},
    **{chr(0xFF41 + i): chr(0x61 + i) for i in range(26)},
    **dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "ABCDEFGHIJKLMNOPRSTUVWYZ", strict=True)),
}

# A URL runs from its scheme (or "www.") to the next whitespace. The lookbehind makes each
# scheme attempt start at the beginning of a word, which keeps the scan linear.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])(?:[A-Za-z][A-Za-z0-9+.\-]{0,31}://|[Ww]{3}\.)\S+")
# Closing quotes or an ellipsis right after a link are prose, not part of it.
_TRAILING = "".join(c for c in LOOKALIKES if not c.isascii())


def substitute(text: str) -> str:
    """``text`` with every look-alike outside a URL replaced by its GSM-7 equivalent."""
    pieces: list[str] = []
    done = 0
    for match in _URL.finditer(text):
        url = match.group().rstrip(_TRAILING)
        pieces.append(_fold(text[done : match.start()]))
        pieces.append(url)
        done = match.start() + len(url)
    pieces.append(_fold(text[done:]))
    return "".join(pieces)


def _fold(prose: str) -> str:
    return prose.translate(_TABLE)


_TABLE = str.maketrans(LOOKALIKES)


@dataclass(frozen=True, slots=True)
class Encoded:
    """What is sent for a body: the text, and its parts before and after smart encoding."""

    text: str
    original: Segmentation
    sent: Segmentation

    @property
    def changed(self) -> bool:
        """True when smart encoding rewrote the body."""
        return self.original is not self.sent


def encode(body: str, smart: bool = False) -> Encoded:
    """The text to send for ``body``: smart-encoded when that makes it GSM-7 without more parts."""
    original = segment(body)
    if not smart or original.encoding is Encoding.GSM7:
        return Encoded(body, original, original)
    text = substitute(body)
    sent = segment(text)
    if sent.encoding is not Encoding.GSM7 or sent.count > original.count:
        return Encoded(body, original, original)
    return Encoded(text, original, sent)


def outgoing(request: SendRequest, provider_default: BodyEncoding) -> tuple[SendRequest, Encoded]:
    """The request to hand one provider, and its encoding before and after.

    The request's own ``encoding`` wins over the provider's setting. The producer's
    request is never altered: a smart-encoded body travels in a copy.
    """
    smart = (request.encoding or provider_default) is BodyEncoding.SMART
    encoded = encode(request.body, smart)
    if not encoded.changed:
        return request, encoded
    return request.model_copy(update={"body": encoded.text}), encoded
