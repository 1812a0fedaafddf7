"""Settings: a YAML file (``SMSRELAY_CONFIG``) overlaid by ``SMSRELAY_*`` variables.

Read once at start-up and passed down; nothing reads the environment later. Every
problem is raised as ``ConfigError`` naming the key, e.g. ``providers.tw.account_sid``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from smsrelay.errors import ConfigError
from smsrelay.providers import ProviderSettings, provider_class

DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {"simulator": {"type": "simulator"}}


class RetrySettings(BaseModel):
    """Delayed retries after every provider in a route failed transiently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=5, ge=1, le=50)
    # One TTL queue per delay: the n-th retry waits delays[n-1] (the last one repeats).
    delays: list[float] = Field(default=[5.0, 30.0, 120.0, 600.0], min_length=1)
    jitter: float = Field(default=0.2, ge=0.0, le=0.5)


class Settings(BaseSettings):
    """Everything the worker, API and CLI are configured with."""

    model_config = SettingsConfigDict(
        env_prefix="SMSRELAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "sqlite+aiosqlite:///smsrelay.db"
    prefetch: int = Field(default=300, ge=1, le=65535)
    grace_period: float = Field(default=20.0, ge=0)
    retention_days: int = Field(default=30, ge=1)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    retry: RetrySettings = RetrySettings()
    providers: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_PROVIDERS))
    # destination → ordered provider names: "+4420" (prefix), "GB" (country) or "*".
    routes: dict[str, list[str]] = Field(default_factory=lambda: {"*": ["simulator"]})
    api_keys: list[str] = []
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # The base URL providers call for receipts (https://sms.example.com): signatures sign it.
    public_url: str | None = None
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
        """Every route names configured providers, and ``*`` exists."""
        if "*" not in self.routes:
            raise ConfigError("routes", 'needs a "*" default route')
        for dest, names in self.routes.items():
            for name in names:
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


def raw_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """The merged, not yet validated configuration (``smsrelay config check`` reports on it)."""
    path = path or os.environ.get("SMSRELAY_CONFIG")
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
        if not name.startswith("SMSRELAY_") or name == "SMSRELAY_CONFIG":
            continue
        *parents, leaf = name.removeprefix("SMSRELAY_").lower().split("__")
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
