"""Names of the AMQP topology: public interface, see docs/asyncapi.yaml."""

from __future__ import annotations

from typing import Final

EXCHANGE: Final[str] = "sms"
SEND_QUEUE: Final[str] = "sms.send"
SEND_BINDING: Final[str] = "sms.send.#"
SEND_ROUTING_KEY: Final[str] = "sms.send"
RETRY_ROUTING_KEY: Final[str] = "sms.send.retry"
DLX: Final[str] = "sms.dlx"
DEAD_QUEUE: Final[str] = "sms.dead"
EVENTS_EXCHANGE: Final[str] = "sms.events"
EVENT_KEY_PREFIX: Final[str] = "sms.status."
RETRY_EXCHANGE: Final[str] = "sms.retry"
RETRY_QUEUE_PREFIX: Final[str] = "sms.retry."
RETRY_QUEUE_SUFFIX: Final[str] = "ms"
REASON_HEADER: Final[str] = "x-smsrelay-reason"
ATTEMPT_HEADER: Final[str] = "x-smsrelay-attempt"


def retry_queue(delay: float) -> str:
    """The retry queue of a delay tier, named by its delay: 5 s → ``sms.retry.5000ms``.

    Queues of versions before delay tiers were named by retry round (``sms.retry.1``…);
    the unit keeps the two apart, and those drain by themselves (see docs/asyncapi.yaml).
    """
    return f"{RETRY_QUEUE_PREFIX}{round(delay * 1000)}{RETRY_QUEUE_SUFFIX}"
