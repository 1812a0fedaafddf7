"""smsrelay: an SMS gateway behind a RabbitMQ exchange.

A producer publishes one request (see ``docs/asyncapi.yaml``); a worker validates it,
routes it to an ordered list of providers, sends with failover and retries, records
every attempt, and publishes status events.
"""

from __future__ import annotations

from smsrelay.errors import (
    AuthenticationFailed,
    ConfigError,
    InvalidRequest,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    ReceiptError,
    RecipientRejected,
    SmsRelayError,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.models import SendRequest, SendResult, State

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "InvalidRequest",
    "PermanentProviderError",
    "ProviderError",
    "RateLimited",
    "ReceiptError",
    "RecipientRejected",
    "SendRequest",
    "SendResult",
    "SmsRelayError",
    "State",
    "TransientProviderError",
    "UnconfirmedSend",
]
