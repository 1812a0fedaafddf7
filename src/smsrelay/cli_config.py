"""``smsrelay config check | show | reference``: is this configuration usable, and what is it.

``check`` reports every problem at once (``load`` stops at the first, which is right
for a process refusing to start, and tiring for a person fixing a file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from smsrelay import config_doc, urls
from smsrelay import settings as config
from smsrelay.cli_errors import EXIT_CODE
from smsrelay.errors import ConfigError
from smsrelay.providers import provider_class
from smsrelay.routing import route_coverage_warnings

config_app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)
ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file (else SMSRELAY_CONFIG).")

# Keys whose values `config show` never prints.
_SECRET_WORDS = ("password", "secret", "token", "api_key", "private_key", "auth")
MASK = "***"


def problems(path: Path | None) -> list[str]:
    """Every problem of the configuration at ``path`` plus the environment; empty when usable."""
    try:
        data = config.raw_config(path)
    except ConfigError as exc:
        return [str(exc)]
    found = _validation_problems(data)
    found += _provider_problems(data.get("providers", config.DEFAULT_PROVIDERS))
    found += _route_problems(data)
    database = data.get("database_url")
    if isinstance(database, str) and database.split("://", 1)[0] in {"postgresql", "postgres"}:
        found.append(
            "config database_url: use postgresql+asyncpg://… (smsrelay's PostgreSQL driver)"
        )
    return found


def _validation_problems(data: dict[str, Any]) -> list[str]:
    try:
        config.Settings(**data)
    except ValidationError as exc:
        return [_line(error) for error in exc.errors()]
    return []


def _provider_problems(providers: Any) -> list[str]:
    if not isinstance(providers, dict):
        return []  # the model's own check has said so
    found: list[str] = []
    for name, raw in providers.items():
        if not isinstance(raw, dict):
            continue
        data = {"type": name, **raw}
        try:
            settings_class = provider_class(str(data["type"])).settings_class
            settings_class.model_validate(data)
        except ConfigError as exc:
            found.append(f"config providers.{name}.type: {exc.problem}")
        except ValidationError as exc:
            found += [_line(error, prefix=f"providers.{name}.") for error in exc.errors()]
    return found


def _route_problems(data: dict[str, Any]) -> list[str]:
    routes = data.get("routes", {"*": ["simulator"]})
    providers = data.get("providers", config.DEFAULT_PROVIDERS)
    if not isinstance(routes, dict) or not isinstance(providers, dict):
        return []
    found = [] if "*" in routes else ['config routes: needs a "*" default route']
    for destination, names in routes.items():
        for name in names if isinstance(names, list) else []:
            if name not in providers:
                found.append(f"config routes.{destination}: unknown provider {name!r}")
    return found


def _line(error: Any, prefix: str = "") -> str:
    key = (prefix + ".".join(str(p) for p in error["loc"])).rstrip(".") or "config"
    return f"config {key}: {str(error['msg']).removeprefix('Value error, ')}"


def warnings(settings: config.Settings) -> list[str]:
    """Usable but probably unintended (printed by ``check``, exit 0)."""
    found = route_coverage_warnings(settings.routes)
    if not settings.api_keys:
        found.append("api_keys is empty: `smsrelay api` refuses every /v1/messages call")
    return found


def masked(settings: config.Settings) -> dict[str, Any]:
    """The effective configuration, secrets and URL passwords masked."""
    data = settings.model_dump(mode="json")
    data["providers"] = {
        name: provider.model_dump(mode="json")
        for name, provider in settings.provider_settings().items()
    }
    masked_data: dict[str, Any] = _mask(data)
    return masked_data


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if key == "api_keys" and isinstance(value, list):
        return [MASK for _ in value]
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str) and value and any(word in key.lower() for word in _SECRET_WORDS):
        return MASK
    if isinstance(value, str) and "://" in value:
        return urls.mask_url(value)
    return value


@config_app.command("check")
def check(config_path: Path | None = ConfigOption) -> None:
    """Validate the file and the SMSRELAY_* environment; print every problem, exit 2 on any."""
    found = problems(config_path)
    for problem in found:
        typer.echo(f"error: {problem}", err=True)
    if found:
        typer.echo(f"{len(found)} problem(s)", err=True)
        raise typer.Exit(EXIT_CODE)
    settings = config.load(config_path)
    for warning in warnings(settings):
        typer.echo(f"warning: {warning}", err=True)
    source = config_path or os.environ.get("SMSRELAY_CONFIG") or "defaults"
    typer.echo(f"configuration OK ({source} + environment)")


@config_app.command("show")
def show(config_path: Path | None = ConfigOption) -> None:
    """Print the effective configuration as YAML, secrets masked."""
    try:
        settings = config.load(config_path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CODE) from None
    typer.echo(yaml.safe_dump(masked(settings), sort_keys=False), nl=False)


@config_app.command("reference")
def reference() -> None:
    """Print the configuration reference (docs/configuration.md) as Markdown."""
    typer.echo(config_doc.render(), nl=False)
