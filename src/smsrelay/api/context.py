"""What every route reaches: the running pieces the app was built with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI, Request

from smsrelay.api.broker import Publisher
from smsrelay.api.refusals import RefusalSampler
from smsrelay.guard import Guard
from smsrelay.metrics import Metrics
from smsrelay.providers import Provider
from smsrelay.settings import Settings
from smsrelay.store import SqlStore
from smsrelay.store.receipt_batch import ReceiptBatcher
from smsrelay.store.receipts import ReceiptStore


@dataclass(frozen=True)
class ApiContext:
    """The app's dependencies, set once by ``create_app``."""

    settings: Settings
    store: SqlStore
    receipts: ReceiptStore
    publisher: Publisher
    providers: Mapping[str, Provider]
    metrics: Metrics
    # Verified webhooks are committed in groups (store/receipt_batch.py).
    batcher: ReceiptBatcher
    refusals: RefusalSampler = field(default_factory=RefusalSampler)
    # Consumers of sms.send as the broker last said (None: unknown); None: not checked.
    send_consumers: Callable[[], int | None] | None = None
    # The pumping guard, for conversions and its blocks (None: off, or no shared state).
    guard: Guard | None = None


def context_of(app: FastAPI) -> ApiContext:
    """The context ``create_app`` attached to ``app``."""
    ctx: ApiContext = app.state.smsrelay
    return ctx


async def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the context of the app serving ``request``.

    ``async``: FastAPI runs a plain ``def`` dependency in a thread, a hop per request.
    """
    return context_of(request.app)
