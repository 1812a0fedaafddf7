"""The replay digest covers what the provider signs, and nothing a replayer could change."""

from __future__ import annotations

from smsrelay.api.receipts import webhook_digest
from smsrelay.providers import Webhook

URL = "https://sms.example.com/v1/receipts/tw"


def hook(method: str = "POST", url: str = URL, body: bytes = b"a=1", **headers: str) -> Webhook:
    """A webhook with lower-cased ``headers``."""
    return Webhook(method, url, {k.replace("_", "-"): v for k, v in headers.items()}, body)


SIGNED = ("x-sig",)


def test_an_unsigned_header_does_not_change_the_digest() -> None:
    """Adding a header the provider does not verify cannot make a replay look new."""
    assert webhook_digest(hook(x_sig="s"), SIGNED) == webhook_digest(
        hook(x_sig="s", x_nonce="1"), SIGNED
    )


def test_the_signature_header_changes_the_digest() -> None:
    """The same body with a fresh signature (a provider's own retry) is a different webhook."""
    assert webhook_digest(hook(x_sig="s1"), SIGNED) != webhook_digest(hook(x_sig="s2"), SIGNED)


def test_the_body_changes_the_digest() -> None:
    """Different reports have different digests."""
    assert webhook_digest(hook(body=b"a=1"), ()) != webhook_digest(hook(body=b"a=2"), ())


def test_the_query_counts_for_a_get_only() -> None:
    """A GET report lives in its query; on a POST an added query parameter changes nothing."""
    assert webhook_digest(hook("GET", URL + "?s=1", b""), ()) != webhook_digest(
        hook("GET", URL + "?s=2", b""), ()
    )
    assert webhook_digest(hook("POST", URL + "?x=1"), ()) == webhook_digest(hook("POST", URL), ())
