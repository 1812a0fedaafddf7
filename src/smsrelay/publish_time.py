"""When the request a worker task is processing was published: for the queue-wait histogram.

``smsrelay_publish_to_request_seconds`` measures from a request's publish to each
provider request made for it. The AMQP layer knows the publish time; the dispatcher,
which knows nothing of AMQP, observes just before each provider call. A context
variable carries the time between them: every delivery runs in a task of its own, so
the value is per delivery, and a dispatcher used without a transport reads None and
observes nothing.

Where the publish time comes from, first found wins:

1. the ``timestamp_in_ms`` header (integer milliseconds since the epoch): smsrelay's
   producers set it, and so does RabbitMQ's ``rabbitmq_message_timestamp`` plugin for
   every producer when it is enabled;
2. the AMQP ``timestamp`` property (whole seconds: up to a second too long);
3. the time the worker received the delivery (the wait inside the worker only).

A time from the wire is hostile input: only a number, and not older than
``MAX_AGE`` (else the receive time is used). A publisher's clock ahead of the
worker's makes the wait negative: it counts as 0.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Final

TIMESTAMP_HEADER: Final[str] = "timestamp_in_ms"

# Older than this is not a publish time smsrelay believes (a week: retry tiers and broker
# outages included), so one bogus header cannot swamp the histogram's sum.
MAX_AGE: Final[float] = 7 * 24 * 3600.0

_published_at: ContextVar[float | None] = ContextVar("smsrelay_published_at", default=None)


def stamp() -> tuple[dict[str, Any], datetime]:
    """What a producer sets: the ``timestamp_in_ms`` header and the ``timestamp`` property."""
    now = time.time()
    return {TIMESTAMP_HEADER: int(now * 1000)}, datetime.fromtimestamp(now).astimezone()


def published_at(headers: Mapping[str, Any] | None, timestamp: datetime | None) -> float:
    """The publish time of a delivery received now (epoch seconds); see the module docstring."""
    now = time.time()
    raw = (headers or {}).get(TIMESTAMP_HEADER)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        candidate: float | None = raw / 1000
    elif timestamp is not None:
        candidate = timestamp.timestamp()
    else:
        candidate = None
    if candidate is None or not now - MAX_AGE <= candidate:
        return now
    return candidate


def delivering(at: float) -> None:
    """Set the publish time of the delivery the current task processes."""
    _published_at.set(at)


def waited() -> float | None:
    """Seconds since the current delivery was published (at least 0); None outside one."""
    at = _published_at.get()
    return None if at is None else max(0.0, time.time() - at)
