"""What one message becomes on an SMPP link: the ``submit_sm`` bodies of its parts.

The parts are exactly those of ``smsrelay.encoding.segments`` (the ones billed): GSM-7
with ``data_coding`` 0, one septet per octet (the SMSC default alphabet, unpacked, as
SMPP 3.4 §5.2.19 sends it), an extension character as the escape 0x1B and its code;
UCS-2 (big-endian UTF-16, a surrogate pair kept whole) with ``data_coding`` 8.

A message of several parts goes out as one ``submit_sm`` per part with a concatenation
header (3GPP TS 23.040 §9.2.3.24.1: IEI 0x00, 8-bit reference) and ``esm_class`` UDHI
(0x40), or, with ``long_messages: payload``, as one ``submit_sm`` carrying the whole body
in the ``message_payload`` TLV (the SMSC splits it).
"""

from __future__ import annotations

from dataclasses import dataclass

from smsrelay.encoding.segments import Encoding, segment

# 23.038 §6.2.1 in code order; index 0x1B is the escape to the extension table.
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}  # fmt: skip
_GSM7_CODE = {c: bytes([i]) for i, c in enumerate(_GSM7_BASIC) if c != "\x1b"}
_GSM7_CODE.update({c: bytes([0x1B, code]) for c, code in _GSM7_EXTENSION.items()})
_GSM7_CHAR = {v: k for k, v in _GSM7_CODE.items()}

DATA_CODING = {Encoding.GSM7: 0x00, Encoding.UCS2: 0x08}
UDHI = 0x40


@dataclass(frozen=True, slots=True)
class PartPdu:
    """The fields of one ``submit_sm`` that depend on the body."""

    short_message: bytes
    data_coding: int
    esm_class: int
    payload: bytes | None = None


def gsm7_bytes(text: str) -> bytes:
    """``text`` (GSM-7 characters only) as unpacked septets."""
    return b"".join(_GSM7_CODE[c] for c in text)


def gsm7_text(data: bytes) -> str:
    """Unpacked septets as text (an unknown code becomes ``?``); for the simulator and tests."""
    out, i = [], 0
    while i < len(data):
        if data[i] == 0x1B and i + 1 < len(data):
            out.append(_GSM7_CHAR.get(data[i : i + 2], "?"))
            i += 2
        else:
            out.append(_GSM7_CHAR.get(data[i : i + 1], "?"))
            i += 1
    return "".join(out)


def encode(text: str, encoding: Encoding) -> bytes:
    """``text`` in the octets of ``encoding``."""
    if encoding is Encoding.GSM7:
        return gsm7_bytes(text)
    return text.encode("utf-16-be", "surrogatepass")


def decode(data: bytes, data_coding: int) -> str:
    """The text of a ``short_message`` sent with ``data_coding`` 0 or 8."""
    if data_coding == 0x08:
        return data.decode("utf-16-be", "replace")
    return gsm7_text(data)


def build(body: str, reference: int, payload: bool = False) -> tuple[list[PartPdu], int]:
    """The ``submit_sm`` bodies for ``body`` and the number of parts it is billed as.

    ``reference`` (0-255) ties the parts of one message together.
    """
    split = segment(body)
    coding = DATA_CODING[split.encoding]
    if split.count == 1:
        return [PartPdu(encode(body, split.encoding), coding, 0)], 1
    if payload:
        return [PartPdu(b"", coding, 0, payload=encode(body, split.encoding))], split.count
    pdus = []
    for seq, part in enumerate(split.parts, start=1):
        header = bytes([0x05, 0x00, 0x03, reference & 0xFF, split.count, seq])
        pdus.append(PartPdu(header + encode(part.text, split.encoding), coding, UDHI))
    return pdus, split.count


def split_udh(short_message: bytes, esm_class: int) -> tuple[tuple[int, int, int] | None, bytes]:
    """``(reference, total, seq)`` of an 8-bit concatenation header, and the text octets."""
    if not esm_class & UDHI or not short_message:
        return None, short_message
    length = short_message[0]
    header, rest = short_message[1 : 1 + length], short_message[1 + length :]
    if len(header) >= 5 and header[0] == 0x00 and header[1] == 0x03:
        return (header[2], header[3], header[4]), rest
    return None, rest


def source_ton_npi(sender: str) -> tuple[int, int]:
    """TON/NPI for a sender: alphanumeric 5/0, short code 3/0, E.164 number 1/1."""
    digits = sender.lstrip("+")
    if not digits:
        return 0, 0
    if not digits.isdigit():
        return 5, 0  # alphanumeric
    if len(digits) <= 8 and not sender.startswith("+"):
        return 3, 0  # network-specific short code
    return 1, 1  # international E.164
