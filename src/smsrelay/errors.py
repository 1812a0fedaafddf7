"""The one exception tree of smsrelay; each class says what happens to the message.

::

    SmsRelayError
    ├─ ConfigError                 start-up refuses; the message names the key
    │  └─ ScenarioError            `smsrelay simulate` refuses the scenario file, naming the key
    ├─ InvalidRequest              dead-letter with the reason; `rejected` event; HTTP 422
    ├─ ProviderError(provider, code)
    │  ├─ TransientProviderError   next provider in the route, then a delayed retry
    │  │  ├─ RateLimited           same, and carries the provider's retry_after
    │  │  ├─ BreakerOpen           not sent: the provider's circuit breaker for the
    │  │  │                        country is open; next provider, then a delayed retry
    │  │  └─ OutcomeUnknown        the request left but no answer came (read timeout,
    │  │                           reset): the provider may have sent it. Retried like a
    │  │                           transient error only when that provider's
    │  │                           `retry_unknown_outcome` allows it, flagged
    │  │                           `possible_duplicate`; otherwise `failed` at once
    │  └─ PermanentProviderError   retrying this provider cannot help: the next provider
    │     │                        in the route is tried; `failed` when none is left
    │     ├─ RecipientRejected     invalid or unreachable number, unsubscribed recipient:
    │     │                        `failed` at once, no other provider is tried
    │     ├─ AuthenticationFailed  bad credentials or account problem
    │     └─ UnconfirmedSend       a success answer we cannot read: the provider may
    │                              have taken it, so `failed` at once, no other provider
    ├─ ReceiptError                a webhook is refused, counted, nothing else changes
    │  ├─ BadSignature             401: the sender could not prove who it is
    │  ├─ StaleReceipt             403: authentic, but old
    │  │  └─ ReplayedReceipt       403: accepted before (the same signed content)
    │  └─ MalformedReceipt         400: over the provider's limits, or unreadable
    │     └─ OversizedReceipt      413: a body larger than the provider ever sends
    └─ StoreError                  the database failed a read or write
       ├─ StoreUnavailable         connection lost or refused, timeout, lock: the message
       │                           goes back to the queue and is tried again later
       └─ StoreRejected            the database refuses this message's values (a data or
                                   integrity error): dead-lettered at once with the reason,
                                   `rejected` event; retrying could never succeed

Foreign exceptions (aiohttp, botocore, SQLAlchemy) are translated into this tree at
exactly one place: the module that talks to the foreign library.
"""

from __future__ import annotations


class SmsRelayError(Exception):
    """Root of every error smsrelay raises on purpose."""

    retryable: bool = False


class ConfigError(SmsRelayError):
    """The configuration is unusable; ``key`` names the offending setting."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}")
        self.key = key
        self.problem = problem


class ScenarioError(ConfigError):
    """A market scenario (``smsrelay simulate``) is unusable; ``key`` names the entry."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.args = (f"scenario {key}: {problem}",)

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidRequest(SmsRelayError):
    """The request can never be sent as it is: dead-lettered with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderError(SmsRelayError):
    """A provider refused or failed a send; ``code`` is the provider's own error code."""

    def __init__(self, provider: str, code: str, message: str) -> None:
        super().__init__(f"{provider} {code}: {message}")
        self.provider = provider
        self.code = code
        self.message = message


class TransientProviderError(ProviderError):
    """A retry (elsewhere or later) can succeed: 5xx, timeout, refused connection, 429."""

    retryable = True


class RateLimited(TransientProviderError):
    """The provider asked us to slow down; ``retry_after`` is in seconds when it said."""

    def __init__(
        self, provider: str, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(provider, code, message)
        self.retry_after = retry_after


class BreakerOpen(TransientProviderError):
    """Not sent: the provider's breaker for this country is open (``smsrelay.health``).

    Raised by no provider: the dispatcher records it when every provider left was
    skipped, so that the message takes the delayed-retry path instead of failing.
    """

    def __init__(self, provider: str) -> None:
        super().__init__(provider, "breaker-open", "circuit breaker open for this country")


class PermanentProviderError(ProviderError):
    """Retrying this provider cannot help; another provider in the route may."""


class RecipientRejected(PermanentProviderError):
    """The number is invalid, unreachable, blocked or has unsubscribed: no provider can help."""


class AuthenticationFailed(PermanentProviderError):
    """The provider rejected our credentials or account."""


class UnconfirmedSend(PermanentProviderError):
    """The provider answered success without a readable message id.

    It may have taken the message, so trying another provider could send it twice.
    """


class OutcomeUnknown(TransientProviderError):
    """The request reached the provider but its answer did not reach us.

    A read timeout or a connection reset after the request was sent: the provider may
    have taken the message. A failure before the request left (refused connection,
    connect timeout, DNS) is a plain ``TransientProviderError`` instead.

    The attempt is recorded ``unknown``. Unless the provider's ``retry_unknown_outcome``
    is set, the message ends ``failed`` (not retryable) and no other provider is tried;
    with it, failover and delayed retries go on, every later send flagged
    ``possible_duplicate``.
    """


class ReceiptError(SmsRelayError):
    """A delivery receipt was not trusted and is refused."""


class BadSignature(ReceiptError):
    """The receipt's signature is missing or does not verify."""


class StaleReceipt(ReceiptError):
    """The receipt's timestamp lies outside the replay window, or it was seen before."""


class StoreError(SmsRelayError):
    """The store failed; the text names the database's error class, never a value."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or did not answer: retrying later can succeed."""

    retryable = True


class StoreRejected(StoreError):
    """The database refuses what this message would write: no retry can succeed."""


class ReplayedReceipt(StaleReceipt):
    """What the receipt's signature covers was accepted before: a replay."""


class MalformedReceipt(ReceiptError):
    """The webhook has more parameters or nesting than its provider sends, or cannot be read."""


class OversizedReceipt(MalformedReceipt):
    """The webhook's body is larger than anything its provider sends."""
