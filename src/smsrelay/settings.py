"""Settings: a YAML file (``SMSRELAY_CONFIG``) overlaid by ``SMSRELAY_*`` variables.

Read once at start-up and passed down; nothing reads the environment later. Every
problem is raised as ``ConfigError`` naming the key, e.g. ``providers.tw.account_sid``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @model_validator(mode="after")
    def _routes_name_providers(self) -> Settings:
        if "*" not in self.routes:
            raise ValueError('routes: needs a "*" default route')
        for dest, names in self.routes.items():
            for name in names:
                if name not in self.providers:
                    raise ValueError(f"routes.{dest}: unknown provider {name!r}")
        return self

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
    """Read the YAML file (if any), overlay the environment and ``overrides``, validate."""
    path = path or os.environ.get("SMSRELAY_CONFIG")
    data: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    data.update(overrides)
    env_keys = {
        k.removeprefix("SMSRELAY_").lower().split("__")[0]
        for k in os.environ
        if k.startswith("SMSRELAY_")
    }
    # Environment beats the file: drop file keys the environment sets.
    file_data = {k: v for k, v in data.items() if k not in env_keys or k in overrides}
    try:
        settings = Settings(**file_data)
        settings.provider_settings()
    except ValidationError as exc:
        raise _config_error(exc) from None
    return settings


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
