"""Helpers the adapters share to verify and read receipt webhooks.

Each adapter keeps its own scheme (what is signed, which headers, which window); these
are the steps several schemes have in common: comparing secrets in constant time,
base64 HMACs, a signed Unix timestamp that must lie within a window of now, and reading
a report's parameters from a form body or the query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from smsrelay.errors import BadSignature, StaleReceipt
from smsrelay.providers.base import Webhook, json_value


def same(received: str, expected: str) -> bool:
    """Whether two secrets (signatures, credentials) are equal, compared in constant time."""
    return hmac.compare_digest(received.encode(), expected.encode())


def hmac_b64(key: bytes, data: bytes, digest: Callable[[], Any] = hashlib.sha256) -> str:
    """The base64 HMAC of ``data`` keyed with ``key`` (SHA-256 unless ``digest`` says)."""
    return base64.b64encode(hmac.new(key, data, digest).digest()).decode()


def check_window(sent: float, now: datetime, window: float, what: str) -> None:
    """Raise ``StaleReceipt`` when ``sent`` (Unix seconds) is over ``window`` s from ``now``."""
    skew = now.timestamp() - sent
    if not abs(skew) <= window:  # written so that a NaN timestamp is stale, not fresh
        raise StaleReceipt(f"{what} timestamp is {skew:.0f}s off, the window is {window:g}s")


def check_timestamp(value: str | None, now: datetime, window: float, what: str) -> None:
    """Check a signed Unix-seconds timestamp: ``BadSignature`` when it is missing or
    unreadable, ``StaleReceipt`` when it lies outside ``window`` seconds of ``now``."""
    try:
        sent = float(value) if value else None
    except ValueError:
        sent = None
    if sent is None:
        raise BadSignature(f"{what} timestamp missing or unreadable")
    check_window(sent, now, window, what)


def report_object(body: bytes, what: str) -> dict[str, Any]:
    """A verified report's JSON object body.

    An authentic report we cannot read is an error (the API answers 400), not "no news":
    ``ValueError`` when the body is not JSON or not an object.
    """
    data = json_value(body)
    if not isinstance(data, dict):
        raise ValueError(f"{what} is not a JSON object")
    return data


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """A form-encoded body's parameters in order, blank values kept."""
    return parse_qsl(body.decode(errors="replace"), keep_blank_values=True)


def form_params(body: bytes) -> dict[str, str]:
    """A form-encoded body's parameters by name (the last of a repeated one wins)."""
    return dict(form_pairs(body))


def single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Parameters by name; ``ValueError`` when a name comes with two different values.

    Schemes that sign the sorted set of values cannot tell ``a=1&a=2`` from ``a=2&a=1``:
    reading either as "the last wins" would let a replayer choose the value.
    """
    found: dict[str, str] = {}
    for name, value in pairs:
        if found.setdefault(name, value) != value:
            raise ValueError("a parameter is given twice with different values")
    return found


def canonical_json(body: bytes) -> bytes:
    """A JSON body re-encoded with sorted keys and no spaces: its bytes' canonical form.

    For schemes that prove the sender but sign no bytes (a shared secret): a replayer
    may re-space or reorder the JSON, and the report must still be the same report.
    """
    try:
        return json.dumps(json_value(body), sort_keys=True, separators=(",", ":")).encode()
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def canonical(*parts: str | bytes) -> bytes:
    """``parts`` joined so that no two different sequences give the same bytes (a replay key)."""
    out = bytearray()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out += b"%d:" % len(data) + data + b";"
    return bytes(out)


def query_params(webhook: Webhook) -> dict[str, str]:
    """The webhook's query parameters, from ``webhook.query`` or else its URL."""
    return dict(webhook.query) or dict(parse_qsl(urlsplit(webhook.url).query))
