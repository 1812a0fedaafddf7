"""Reading SMPP delivery receipts and building parts: pure functions, hostile input included."""

from __future__ import annotations

import time

from smsrelay.models import ReceiptStatus
from smsrelay.providers.smpp import pdus, receipts

TEXT = (
    b"id:0123456789 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201"
    b" stat:DELIVRD err:000 text:Hello"
)


def test_appendix_b_text_alone_gives_id_state_and_time() -> None:
    """Without TLVs, the id, stat, err and done date come from the text."""
    report = receipts.parse(TEXT, None, None)
    assert report is not None
    assert report.message_id == "0123456789" and report.status is ReceiptStatus.DELIVERED
    assert report.error_code is None and report.done_at is not None
    assert report.done_at.isoformat() == "2026-12-01T12:01:00+00:00"


def test_tlvs_win_over_the_text() -> None:
    """receipted_message_id and message_state (5: UNDELIVERABLE) override the text."""
    report = receipts.parse(TEXT, "abc", 5)
    assert report is not None
    assert report.message_id == "abc" and report.status is ReceiptStatus.UNDELIVERED


def test_every_stat_is_normalised() -> None:
    """REJECTD and DELETED fail, EXPIRED and UNDELIV are undelivered, ENROUTE/ACCEPTD wait."""
    expected = {
        "DELIVRD": ReceiptStatus.DELIVERED,
        "UNDELIV": ReceiptStatus.UNDELIVERED,
        "EXPIRED": ReceiptStatus.UNDELIVERED,
        "REJECTD": ReceiptStatus.FAILED,
        "DELETED": ReceiptStatus.FAILED,
        "ENROUTE": ReceiptStatus.PENDING,
        "ACCEPTD": ReceiptStatus.PENDING,
        "UNKNOWN": ReceiptStatus.PENDING,
    }
    for stat, status in expected.items():
        report = receipts.parse(receipts.receipt_text("7", stat).encode(), None, None)
        assert report is not None and report.status is status, stat


def test_a_receipt_without_an_id_is_not_read() -> None:
    """No receipted_message_id and no id: in the text: nothing to match, None."""
    assert receipts.parse(b"stat:DELIVRD", None, None) is None


def test_huge_or_garbage_receipt_text_is_read_in_bounded_time() -> None:
    """A 64 KiB message_payload of near-matches is parsed in well under a second."""
    hostile = b"id:" + b"id:x " * 13000 + b"done date:" + b"9" * 5000
    started = time.perf_counter()
    receipts.parse(hostile, None, None)
    receipts.parse(bytes(range(256)) * 256, None, None)
    assert time.perf_counter() - started < 1.0


def test_hex_and_decimal_forms_of_an_id_are_aliases() -> None:
    """An id answered in hex is also known by its decimal form, and the reverse."""
    assert "255" in receipts.id_aliases("FF")
    assert "ff" in receipts.id_aliases("255")
    assert receipts.id_aliases("msg-1") == ["msg-1"]


def test_gsm7_round_trip_with_every_extension_character() -> None:
    """Each extension character is escape + code, and decodes back."""
    text = "^{}\\[~]|€\f plain @£$"
    octets = pdus.gsm7_bytes(text)
    assert octets.count(0x1B) == 10
    assert pdus.gsm7_text(octets) == text


def test_single_part_has_no_header_and_parts_carry_one_reference() -> None:
    """160 GSM-7 chars fit one part without UDH; 161 become two parts with UDH ref 42."""
    [single], count = pdus.build("a" * 160, 42)
    assert count == 1 and single.esm_class == 0 and single.short_message == b"a" * 160
    parts, count = pdus.build("a" * 161, 42)
    assert count == 2
    headers = [pdus.split_udh(p.short_message, p.esm_class)[0] for p in parts]
    assert headers == [(42, 2, 1), (42, 2, 2)]
