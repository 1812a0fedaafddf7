"""Kept for existing imports: segment counting lives in ``smsrelay.encoding.segments``."""

from __future__ import annotations

from smsrelay.encoding.segments import count, is_gsm7

__all__ = ["count", "is_gsm7"]
