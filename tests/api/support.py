"""Helpers for API tests: an in-memory publisher, a parts-reporting provider, signing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI

from smsrelay.api import BrokerUnavailable, create_app
from smsrelay.api.broker import Publisher
from smsrelay.errors import BadSignature
from smsrelay.guard import Guard
from smsrelay.metrics import Metrics
from smsrelay.models import Receipt, SendRequest, SendResult, StatusEvent
from smsrelay.providers import Provider, ProviderSettings, Webhook
from smsrelay.providers.twilio import twilio_signature
from smsrelay.settings import Settings
from smsrelay.store import SqlStore
from smsrelay.store.receipts import ReceiptStore
from tests.conftest import eventually

API_KEY = "test-api-key-7c1d"
PUBLIC_URL = "https://sms.example.com"
TWILIO_TOKEN = "twilio-token-for-receipts"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
PARTS_SECRET = "parts-secret"
# Nothing listens on port 1: a broker URL that can never connect.
DEAD_BROKER = "amqp://guest:guest@127.0.0.1:1/"


def api_settings(database_url: str, amqp_url: str = DEAD_BROKER, **overrides: Any) -> Settings:
    """Settings with a Twilio instance, a parts-reporting one, a simulator and one API key."""
    data: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "api_keys": [API_KEY],
        "public_url": PUBLIC_URL,
        "providers": {
            "twilio": {"account_sid": ACCOUNT_SID, "auth_token": TWILIO_TOKEN, "sender": "+1415"},
            "simulator": {"type": "simulator"},
        },
        "routes": {"*": ["simulator"]},
        **overrides,
    }
    return Settings(**data)


@dataclass
class MemoryPublisher:
    """A ``Publisher`` that keeps what it is given; ``down`` makes every publish fail."""

    down: bool = False
    requests: list[SendRequest] = field(default_factory=list)
    events: list[StatusEvent] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.down

    async def start(self) -> None:
        return None

    async def publish_request(self, request: SendRequest) -> None:
        if self.down:
            raise BrokerUnavailable("down")
        self.requests.append(request)

    async def publish_event(self, event: StatusEvent) -> None:
        if self.down:
            raise BrokerUnavailable("down")
        self.events.append(event)

    async def close(self) -> None:
        return None


class PartsSettings(ProviderSettings):
    """Settings of ``PartsProvider``."""

    type: str = "parts"


class PartsProvider(Provider):
    """A provider that reports each part: JSON receipts (or a GET query), a shared-secret header."""

    type_name: ClassVar[str] = "parts"
    settings_class: ClassVar[type[ProviderSettings]] = PartsSettings

    async def send(self, request: SendRequest) -> SendResult:
        raise NotImplementedError  # only its receipts are used

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        if webhook.header("x-parts-secret") != PARTS_SECRET:
            raise BadSignature("x-parts-secret does not match")

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        if webhook.method == "GET":  # one report in the query, as Vonage and MessageBird send
            return [Receipt.model_validate(webhook.query)]
        return [Receipt.model_validate(item) for item in json.loads(webhook.body)]


@dataclass
class Api:
    """A running app and what it was built on."""

    client: httpx.AsyncClient
    app: FastAPI
    store: SqlStore
    receipts: ReceiptStore
    publisher: Publisher
    metrics: Metrics
    providers: dict[str, Provider]

    async def metric(self, name: str, **labels: str) -> float | None:
        """A sample's value from the app's registry."""
        return self.metrics.registry.get_sample_value(name, labels)


@asynccontextmanager
async def running_api(
    settings: Settings,
    store: SqlStore,
    publisher: Publisher,
    providers: dict[str, Provider] | None = None,
    metrics: Metrics | None = None,
    pumping_guard: Guard | None = None,
) -> AsyncIterator[Api]:
    """The app with its lifespan entered and an HTTP client on it (in process)."""
    from smsrelay import providers as registry

    built = providers or {
        name: registry.build(name, s) for name, s in settings.provider_settings().items()
    }
    built.setdefault("parts", PartsProvider("parts", PartsSettings()))
    metrics = metrics or Metrics()
    app = create_app(settings, store, publisher, built, metrics, pumping_guard=pumping_guard)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        batcher = app.state.smsrelay.batcher

        async def settled(_: httpx.Response) -> None:
            # Receipts' events are published after the answer (store/receipt_batch.py):
            # the tests read the publisher once they have gone out, as before.
            await eventually(batcher.idle)

        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            event_hooks={"response": [settled]},
        ) as client:
            yield Api(client, app, store, app.state.smsrelay.receipts, publisher, metrics, built)


def twilio_callback(
    sid: str, status: str = "delivered", url: str = f"{PUBLIC_URL}/v1/receipts/twilio", **extra: str
) -> tuple[bytes, dict[str, str]]:
    """A Twilio status callback's body and headers, signed for ``url``."""
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT_SID, **extra}
    signature = twilio_signature(TWILIO_TOKEN.encode(), url, sorted(params.items()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    return urlencode(params).encode(), headers


def auth(key: str = API_KEY) -> dict[str, str]:
    """The bearer header for ``key``."""
    return {"Authorization": f"Bearer {key}"}
