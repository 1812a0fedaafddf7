"""``smsrelay report costs``: messages, parts, deliveries and cost per provider and country."""

from __future__ import annotations

from pathlib import Path

import typer

from smsrelay.cli_runner import ConfigOption, load_settings, run
from smsrelay.economics.report import (
    CostRow,
    ReportError,
    parse_by,
    parse_since,
    to_csv,
    to_json,
    to_table,
)
from smsrelay.settings import Settings

report_app = typer.Typer(help="Reports over the store.", no_args_is_help=True)
FORMATS = {"table": to_table, "csv": to_csv, "json": to_json}


async def _rows(settings: Settings, since: str, by: str) -> list[CostRow]:
    from smsrelay.store import SqlStore, upgrade
    from smsrelay.store.costs import CostStore

    store = SqlStore.from_url(settings.database_url)
    try:
        await upgrade(store.engine)
        return await CostStore(store.engine).report(parse_since(since), parse_by(by))
    finally:
        await store.close()


@report_app.command("costs")
def costs_command(
    since: str = typer.Option("7d", "--since", help="7d, 12h, 30m or a date (2026-11-01)."),
    by: str = typer.Option("provider,country", "--by", help="Group by provider, country."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    config: Path | None = ConfigOption,
) -> None:
    """Messages sent, parts, delivered, estimated and actual cost, cost per delivered."""
    if fmt not in FORMATS:
        typer.echo("error: --format is table, csv or json", err=True)
        raise typer.Exit(2)
    try:
        parse_since(since)
        parse_by(by)
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = load_settings(config)
    rows = run(_rows(settings, since, by), settings)
    typer.echo(FORMATS[fmt](rows).rstrip("\n"))
