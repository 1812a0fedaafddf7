"""Settings: a YAML file (``SMSRELAY_CONFIG``) overlaid by ``SMSRELAY_*`` variables.

Read once at start-up and passed down; nothing reads the environment later. Every
problem is raised as ``ConfigError`` naming the key, e.g. ``providers.tw.account_sid``.
Only variables that name a declared key are read (``SMSRELAY_RETRY__JITTER``, any
``SMSRELAY_PROVIDERS__<name>__<key>``): another ``SMSRELAY_*`` variable, a tool's or a
typo, is ignored and reported by ``unknown_variables`` rather than stopping the process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from smsrelay.brokers import BrokerUrls
from smsrelay.economics.prices import PriceSettings
from smsrelay.errors import ConfigError
from smsrelay.guard.settings import GuardSettings
from smsrelay.health.settings import HealthSettings
from smsrelay.limits.settings import LimitSettings, SpendCapSettings
from smsrelay.otp.geo import GeoSettings
from smsrelay.providers import ProviderSettings, provider_class
from smsrelay.routing import RouteConfig, RouteSpec, check_route_key, route_providers

DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {"simulator": {"type": "simulator"}}


class RetrySettings(BaseModel):
    """Delayed retries after every provider in a route failed transiently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=5, ge=1, le=50)
    # The n-th retry waits delays[n-1] (the last one repeats). Each distinct delay is a
    # tier with its own TTL queue (sms.retry.<ms>ms), so a long delay never holds back a
    # short one: RabbitMQ expires messages only at the head of a queue.
    delays: list[Annotated[float, Field(ge=0.001, le=604800)]] = Field(
        default=[5.0, 30.0, 120.0, 600.0], min_length=1
    )
    jitter: float = Field(default=0.2, ge=0.0, le=0.5)

    @property
    def tiers(self) -> list[float]:
        """The distinct delays, shortest first: one retry queue each."""
        return sorted(set(self.delays))

    def round_up(self, delay: float) -> float:
        """The shortest tier at least ``delay`` long, the longest tier at most."""
        return next((tier for tier in self.tiers if tier >= delay), self.tiers[-1])

    def tier_for(self, delay: float) -> float:
        """The tier whose queue a message waiting ``delay`` seconds goes to.

        A delay is its tier's delay with jitter, or a ``Retry-After`` already rounded up
        to a tier: the shortest tier it can be a jittered form of. Messages in one queue
        then differ in delay by the jitter at most, which is all one can hold back another.
        """
        return self.round_up(delay / (1 + self.jitter) * (1 - 1e-9))


class ResendSettings(BaseModel):
    """Receipt-deadline resends of OTPs (``resend_after``; smsrelay.otp.resend_deadline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Resends of one message at most, each through the route's next provider; 0: none.
    max_resends: int = Field(default=1, ge=0, le=5)


class ApiLimits(BaseModel):
    """What one HTTP client may cost the API: time to send a request, bytes held in memory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A connection whose request headers are not complete by then is closed.
    header_timeout: float = Field(default=5.0, gt=0)
    # A request whose body is not complete this long after its headers is dropped.
    body_timeout: float = Field(default=10.0, gt=0)
    # Any request body; routes set smaller limits (/v1/messages: 64 KiB).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Request bodies held in memory at once, all requests together; beyond it: 503.
    body_budget_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # Connections and requests at once; beyond it uvicorn answers 503.
    max_connections: int = Field(default=1000, ge=1)


class VerificationSettings(BaseModel):
    """Codes smsrelay generates and checks itself (``POST /v1/verifications``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys the codes' hashes; kept out of the database so a copy of it cannot be
    # brute-forced offline. The same on every API process. Unset: digest_key is used;
    # neither set: verifications answer 503.
    key: SecretStr | None = None
    max_attempts: int = Field(default=5, ge=1, le=20)
    # Seconds before the same number may be sent a new code for an open verification.
    resend_cooldown: float = Field(default=30.0, ge=0)
    # Codes sent to one number within window_seconds, all its verifications together.
    max_sends_per_number: int = Field(default=5, ge=1)
    window_seconds: float = Field(default=3600.0, gt=0)


def _default_routes() -> dict[str, list[str] | RouteConfig]:
    return {"*": ["simulator"]}


class Settings(BaseSettings):
    """Everything the worker, API and CLI are configured with."""

    model_config = SettingsConfigDict(
        env_prefix="SMSRELAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # One broker URL, or every node of a cluster: comma-separated or a list (smsrelay.brokers).
    amqp_url: BrokerUrls = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "sqlite+aiosqlite:///smsrelay.db"
    prefetch: int = Field(default=300, ge=1, le=65535)
    # Deliveries in flight from the OTP lane (sms.otp), on top of `prefetch`.
    otp_prefetch: int = Field(default=50, ge=1, le=65535)
    grace_period: float = Field(default=20.0, ge=0)
    retention_days: int = Field(default=30, ge=1)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    retry: RetrySettings = RetrySettings()
    resend: ResendSettings = ResendSettings()
    providers: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_PROVIDERS))
    # destination → ordered provider names: "+4420" (prefix), "GB" (country) or "*".
    # A route is a list of provider names (tried in order) or a RouteConfig mapping.
    routes: dict[str, RouteSpec] = Field(default_factory=_default_routes)
    api_keys: list[str] = []
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_limits: ApiLimits = ApiLimits()
    # The base URL providers call for receipts (https://sms.example.com): signatures sign it.
    public_url: str | None = None
    # Price tables in config form, and how old a price may get (smsrelay.economics.prices).
    prices: PriceSettings = PriceSettings()
    # Keys request digests (see SendRequest.digest); the same on every API and worker.
    digest_key: SecretStr | None = None
    # Health windows and breakers; shared limits (smsrelay.health, smsrelay.limits).
    health: HealthSettings = HealthSettings()
    redis_url: str | None = None
    limits: LimitSettings = LimitSettings()
    spend_caps: SpendCapSettings = SpendCapSettings()
    verification: VerificationSettings = VerificationSettings()
    # Destination countries permitted, for every message and for OTPs (smsrelay.otp.geo).
    geo: GeoSettings = GeoSettings()
    # Pumping protection for OTPs: velocity, budget, conversion blocks (smsrelay.guard).
    guard: GuardSettings = GuardSettings()

    def verification_key(self) -> bytes | None:
        """The key of verification codes' hashes: ``verification.key``, else ``digest_key``."""
        key = self.verification.key or self.digest_key
        return key.get_secret_value().encode() if key else None

    def request_digest_key(self) -> bytes | None:
        """``digest_key`` as the bytes ``SendRequest.digest`` takes."""
        return self.digest_key.get_secret_value().encode() if self.digest_key else None

    # The worker's /metrics, /healthz, /readyz; 0 = off (the API serves them on api_port).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    queue_poll_interval: float = Field(default=15.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load() merges file, environment and overrides key by key itself: a variable
        # like SMSRELAY_RETRY__JITTER must change one key, not replace the file's block.
        return (init_settings,)

    def check_routes(self) -> None:
        """Every route key can match (see routing), names configured providers; ``*`` exists."""
        if "*" not in self.routes:
            raise ConfigError("routes", 'needs a "*" default route')
        for dest, spec in self.routes.items():
            check_route_key(dest)
            for name in route_providers(spec):
                if name not in self.providers:
                    raise ConfigError(f"routes.{dest}", f"unknown provider {name!r}")

    def provider_settings(self) -> dict[str, ProviderSettings]:
        """Each configured provider's settings, validated by its own model."""
        return {name: _provider(name, raw) for name, raw in self.providers.items()}


def _provider(name: str, raw: dict[str, Any]) -> ProviderSettings:
    data = {"type": name, **raw}
    try:
        cls = provider_class(str(data["type"])).settings_class
    except ConfigError as exc:
        raise ConfigError(f"providers.{name}.type", exc.problem) from None
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, prefix=f"providers.{name}.") from None


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    first = exc.errors()[0]
    key = prefix + ".".join(str(p) for p in first["loc"])
    return ConfigError(key.rstrip(".") or "config", first["msg"].removeprefix("Value error, "))


def load(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), overlay ``SMSRELAY_*`` variables, then ``overrides``."""
    data = raw_config(path, **overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc) from None
    settings.check_routes()
    settings.provider_settings()
    return settings


ENV_PREFIX = "SMSRELAY_"
CONFIG_VARIABLE = "SMSRELAY_CONFIG"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``SMSRELAY_*`` variables that name no setting (``load`` ignores them), sorted."""
    environ = os.environ if environ is None else environ
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX) and name != CONFIG_VARIABLE and _env_path(name) is None
    )


def _env_path(name: str) -> list[str] | None:
    """``SMSRELAY_RETRY__JITTER`` → ``["retry", "jitter"]``; None unless a declared key."""
    path = name.removeprefix(ENV_PREFIX).lower().split("__")
    field = Settings.model_fields.get(path[0])
    if field is None or not all(path):
        return None
    kind = field.annotation
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        # A nested block (retry): whole, as JSON, or one of its own keys.
        inner = path[1:]
        return path if not inner or (len(inner) == 1 and inner[0] in kind.model_fields) else None
    if get_origin(kind) is dict:
        # Keyed by the operator's names (providers, routes): their models check the rest.
        # A variable name cannot hold "+" or "*": its route key is a country, upper case.
        return path if path[0] != "routes" else [path[0], *(p.upper() for p in path[1:])]
    return path if len(path) == 1 else None


def raw_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """The merged, not yet validated configuration (``smsrelay config check`` reports on it)."""
    path = path or os.environ.get(CONFIG_VARIABLE)
    data: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    environment = _environment()
    comma_lists(environment, Settings)
    _merge(data, environment)
    _merge(data, overrides)
    return data


def comma_lists(values: dict[str, Any], model: type[BaseModel]) -> None:
    """``SMSRELAY_API_KEYS=abc,def`` as a list: split scalars given for list-typed keys.

    A JSON list (``["a,b"]``) is kept as it is, for items that hold a comma.
    """
    for key, value in values.items():
        field = model.model_fields.get(key)
        annotation = field.annotation if field else None
        if get_origin(annotation) is list and isinstance(value, str | int | float):
            values[key] = [part.strip() for part in str(value).split(",") if part.strip()]
        elif isinstance(value, dict) and _is_model(annotation):
            comma_lists(value, annotation)


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _environment() -> dict[str, Any]:
    """``SMSRELAY_A__B=v`` as ``{"a": {"b": v}}``; values are JSON when they parse as JSON."""
    out: dict[str, Any] = {}
    for name, raw in os.environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_VARIABLE:
            continue
        if (path := _env_path(name)) is None:
            continue
        *parents, leaf = path
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _env_value(raw)
    return out


def _env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge ``extra`` into ``base``: nested mappings key by key, the rest replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError("SMSRELAY_CONFIG", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("SMSRELAY_CONFIG", f"{path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError("SMSRELAY_CONFIG", f"{path} must hold a mapping at the top level")
    return loaded
