"""The replay digest covers what the provider signs, and nothing a replayer could change."""

from __future__ import annotations

from smsrelay.api.receipts import webhook_digest
from smsrelay.providers import Webhook
from tests.api.support import PartsProvider, PartsSettings

URL = "https://sms.example.com/v1/receipts/tw"


def hook(method: str = "POST", url: str = URL, body: bytes = b"a=1", **headers: str) -> Webhook:
    """A webhook with lower-cased ``headers``."""
    return Webhook(method, url, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def key(webhook: Webhook, *signed: str) -> str:
    """The digest of ``webhook`` for a provider whose signature headers are ``signed``."""
    provider = PartsProvider("p", PartsSettings())
    provider.signature_headers = signed
    return webhook_digest(provider.type_name, provider.replay_key(webhook))


def test_an_unsigned_header_does_not_change_the_digest() -> None:
    """Adding a header the provider does not verify cannot make a replay look new."""
    assert key(hook(x_sig="s"), "x-sig") == key(hook(x_sig="s", x_nonce="1"), "x-sig")


def test_the_signature_header_changes_the_digest() -> None:
    """By default, the same body with a fresh signature is a different webhook."""
    assert key(hook(x_sig="s1"), "x-sig") != key(hook(x_sig="s2"), "x-sig")


def test_the_body_changes_the_digest() -> None:
    """Different reports have different digests."""
    assert key(hook(body=b"a=1")) != key(hook(body=b"a=2"))


def test_the_query_counts_for_a_get_only() -> None:
    """A GET report lives in its query; on a POST an added query parameter changes nothing."""
    assert key(hook("GET", URL + "?s=1", b"")) != key(hook("GET", URL + "?s=2", b""))
    assert key(hook("POST", URL + "?x=1")) == key(hook("POST", URL))


def test_the_same_content_of_two_provider_types_differs() -> None:
    """The provider's type is part of the digest."""
    assert webhook_digest("a", b"x") != webhook_digest("b", b"x")
