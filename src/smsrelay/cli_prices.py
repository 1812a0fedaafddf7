"""``smsrelay prices``: import, sync and list the price tables kept in the database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from smsrelay.cli_runner import ConfigOption, load_settings, run
from smsrelay.economics.prices import (
    MAX_CSV_BYTES,
    Price,
    PriceError,
    PriceTable,
    parse_csv,
    stale,
)
from smsrelay.settings import Settings

prices_app = typer.Typer(
    help="Price tables per provider: import, sync, list.", no_args_is_help=True
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _read(file: Path) -> bytes:
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise _fail(f"{file}: {exc.strerror}") from None
    if len(data) > MAX_CSV_BYTES:
        raise _fail(f"{file}: larger than {MAX_CSV_BYTES} bytes")
    return data


async def _save(settings: Settings, rows: list[Price], source: str) -> str:
    from smsrelay.store import SqlStore, upgrade
    from smsrelay.store.prices import PriceStore

    store = SqlStore.from_url(settings.database_url)
    try:
        await upgrade(store.engine)
        done = await PriceStore(store.engine).save(rows, source)
    finally:
        await store.close()
    return f"{done.added} added, {done.changed} changed, {done.unchanged} unchanged"


async def _history(settings: Settings, provider: str | None) -> list[Price]:
    from smsrelay.store import SqlStore, upgrade
    from smsrelay.store.prices import PriceStore

    store = SqlStore.from_url(settings.database_url)
    try:
        await upgrade(store.engine)
        return await PriceStore(store.engine).history(provider)
    finally:
        await store.close()


def _warn_stale(settings: Settings, rows: list[Price]) -> None:
    old = stale(rows, settings.prices.max_age)
    if old:
        typer.echo(
            f"warning: {len(old)} of these prices took effect more than "
            f"{settings.prices.max_age_days} days ago (prices.max_age_days)",
            err=True,
        )


@prices_app.command("import")
def import_csv(
    file: Path = typer.Argument(..., help="provider,destination,price,currency[,effective_from]"),
    provider: str = typer.Option(..., "--provider", help="The provider every row is for."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Add a provider's prices from a CSV file; earlier prices are kept as history."""
    settings = load_settings(config_path)
    if provider not in settings.providers:
        raise _fail(f"no provider named {provider!r} in the config")
    try:
        rows = parse_csv(_read(file), provider=provider)
    except PriceError as exc:
        raise _fail(f"{file}: {exc}") from None
    summary = run(_save(settings, rows, "csv"), settings)
    typer.echo(f"{provider}: {len(rows)} prices read, {summary}")
    _warn_stale(settings, rows)


@prices_app.command("sync")
def sync(config_path: Path | None = ConfigOption) -> None:
    """Store the config file's ``prices.providers`` tables in the database."""
    settings = load_settings(config_path)
    rows = settings.prices.table()
    summary = run(_save(settings, rows, "config"), settings)
    typer.echo(f"{len(rows)} prices from the config, {summary}")
    _warn_stale(settings, rows)


@prices_app.command("list")
def list_prices(
    provider: str | None = typer.Option(None, "--provider", help="Only this provider."),
    history: bool = typer.Option(False, "--history", help="Every price ever imported."),
    config_path: Path | None = ConfigOption,
) -> None:
    """The prices in effect now (or all of them), with a mark on stale ones."""
    settings = load_settings(config_path)
    rows = run(_history(settings, provider), settings)
    now = datetime.now(UTC)
    current = list(PriceTable(rows, now).prices.values())
    shown = rows if history else sorted(current, key=lambda p: (p.provider, p.destination))
    typer.echo(f"{'provider':<16} {'destination':<12} {'price':>14} cur  {'effective_from':<25} ")
    in_effect = set(current)
    for p in shown:
        flag = ""
        if p.effective_from > now:
            flag = "future"
        elif p not in in_effect:
            flag = "superseded"
        elif now - p.effective_from > settings.prices.max_age:
            flag = "stale"
        when = p.effective_from.isoformat(timespec="seconds")
        line = f"{p.provider:<16} {p.destination:<12} {p.price:>14} {p.currency}  {when:<25} {flag}"
        typer.echo(line.rstrip())
    typer.echo(f"{len(shown)} prices", err=True)
