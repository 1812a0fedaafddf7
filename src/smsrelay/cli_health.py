"""``smsrelay health``: delivery per provider x destination country, from the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer

from smsrelay.cli_runner import ConfigOption, fail, load_settings, run
from smsrelay.health.report import KeyHealth, build_report, to_document, to_table, windows_since
from smsrelay.settings import Settings


async def _rows(
    settings: Settings, windows: dict[str, datetime], provider: str | None, country: str | None
) -> list[KeyHealth]:
    from smsrelay.store import SqlStore, upgrade
    from smsrelay.store.health import HealthReads

    store = SqlStore.from_url(settings.database_url)
    try:
        await upgrade(store.engine)
        return await build_report(HealthReads(store), windows, provider=provider, country=country)
    finally:
        await store.close()


def health_command(
    since: str | None = typer.Option(
        None, "--since", help="One window (30s, 5m, 1h, 7d); default: 5m, 1h and 24h."
    ),
    provider: str | None = typer.Option(None, "--provider", help="Only this provider."),
    country: str | None = typer.Option(None, "--country", help="Only this ISO country (GB)."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    config: Path | None = ConfigOption,
) -> None:
    """Sent, delivered, undelivered, delivery rate, failure codes, receipt latency."""
    now = datetime.now(UTC)
    try:
        windows = windows_since(since, now)
    except ValueError as exc:
        raise fail(f"--since: {exc}", 2) from None
    country = country.strip().upper() if country else None
    if country is not None and (len(country) != 2 or not country.isalpha()):
        raise fail("--country: an ISO 3166 alpha-2 code such as GB", 2)
    settings = load_settings(config)
    rows = run(_rows(settings, windows, provider, country), settings)
    if as_json:
        typer.echo(json.dumps(to_document(rows, windows, now), indent=2))
    elif rows:
        typer.echo(to_table(rows))
    else:
        typer.echo("no messages sent in these windows")
