"""The provider interface, its settings base, and the shared HTTP plumbing.

A provider turns a validated ``SendRequest`` into a ``SendResult`` or raises one of
the ``ProviderError`` subclasses from ``smsrelay.errors``. Nothing else in smsrelay
knows a provider's wire format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr

from smsrelay.errors import RateLimited, TransientProviderError
from smsrelay.models import SendRequest, SendResult


class ProviderSettings(BaseModel):
    """Settings every provider takes; each provider subclasses it with its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    base_url: str = ""
    timeout: float = 10.0
    max_connections: int = 1000
    sender: str | None = None


class Provider(ABC):
    """One configured SMS provider instance, named in the routing table."""

    type_name: ClassVar[str]
    settings_class: ClassVar[type[ProviderSettings]]

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings

    @abstractmethod
    async def send(self, request: SendRequest) -> SendResult:
        """Hand ``request`` to the provider, or raise a ``ProviderError``."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections; the provider is not used afterwards."""


class HttpProvider(Provider):
    """A provider reached over HTTP through one pooled aiohttp session."""

    default_base_url: ClassVar[str]

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.base_url = (settings.base_url or self.default_base_url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily so that it binds to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            )
        return self._session

    async def request(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """Perform one call; network failures become ``TransientProviderError``."""
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                body = await resp.read()
                return resp.status, dict(resp.headers), body
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientProviderError(
                self.name, "network", type(exc).__name__ + ": " + str(exc)
            ) from exc

    def raise_for_http_status(
        self, status: int, headers: dict[str, str], code: str, message: str
    ) -> None:
        """Map the HTTP statuses every provider shares: 429 and 5xx are transient."""
        if status == 429:
            raise RateLimited(self.name, code, message, retry_after=_retry_after(headers))
        if status >= 500:
            raise TransientProviderError(self.name, code, message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def secret(value: SecretStr | None) -> str:
    """The plain text of a configured secret (only adapters call this)."""
    return value.get_secret_value() if value is not None else ""
