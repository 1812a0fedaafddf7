"""scrub(): provider error text fit for logs, events and the store."""

from __future__ import annotations

from smsrelay.providers.base import scrub


def test_control_characters_in_provider_text_become_spaces() -> None:
    """A NUL (which PostgreSQL cannot store) or other control character never reaches a record."""
    assert scrub("bad\x00request\r\nfrom\x7fgateway") == "bad request  from gateway"
