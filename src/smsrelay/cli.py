"""The ``smsrelay`` command: worker, api, send, status, resend, dlq, config, migrate, demo,
health.

Each command reads settings once (``--config`` or ``SMSRELAY_CONFIG``, then
``SMSRELAY_*`` variables) and refuses to start on a configuration error, naming the key.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import typer

from smsrelay import brokers
from smsrelay.cli_config import config_app
from smsrelay.cli_dlq import dlq_app
from smsrelay.cli_errors import require_existing_sqlite
from smsrelay.cli_guard import guard_app
from smsrelay.cli_health import health_command
from smsrelay.cli_prices import prices_app
from smsrelay.cli_report import report_app
from smsrelay.cli_route import route_app
from smsrelay.cli_runner import ConfigOption, fail, load_settings, run
from smsrelay.cli_simulate import simulate
from smsrelay.errors import ConfigError
from smsrelay.phone import mask
from smsrelay.resend import Outcome
from smsrelay.settings import Settings
from smsrelay.store import MessageRecord

app = typer.Typer(help="smsrelay: an SMS gateway behind RabbitMQ.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(prices_app, name="prices")
app.add_typer(guard_app, name="guard")
app.add_typer(config_app, name="config")
app.add_typer(route_app, name="route")
app.add_typer(report_app, name="report")
app.command("health")(health_command)
topology_app = typer.Typer(help="The broker's exchanges and queues.", no_args_is_help=True)
app.add_typer(topology_app, name="topology")
app.command()(simulate)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smsrelay {version('smsrelay')}")
        raise typer.Exit()


@app.callback()
def _main(
    _: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """smsrelay: an SMS gateway behind RabbitMQ."""


@app.command()
def worker(
    config_path: Path | None = ConfigOption,
    processes: int = typer.Option(
        1,
        "--processes",
        "-p",
        min=1,
        max=256,
        help="Worker processes under one supervisor (one per core); metrics on metrics_port+i.",
    ),
) -> None:
    """Consume sms.send and deliver through the configured providers until SIGTERM."""
    from smsrelay.runtime import run_worker
    from smsrelay.supervisor import run_supervisor

    settings = load_settings(config_path)
    if processes == 1:
        run(run_worker(settings), settings, fast_loop=True)
        return
    code = run(run_supervisor(settings, processes, config_path), settings)
    if code:
        raise typer.Exit(code)


@app.command()
def api(
    config_path: Path | None = ConfigOption,
    with_worker: bool = typer.Option(
        False, "--worker", help="Also consume sms.send in this process (one /metrics for both)."
    ),
) -> None:
    """Serve the HTTP API on api_host:api_port (messages, receipts, health, metrics)."""
    from smsrelay.api.server import run_api

    settings = load_settings(config_path)
    run(run_api(settings, with_worker=with_worker), settings)


@app.command()
def send(
    to: str = typer.Option(..., help="E.164 number, or national with --region."),
    body: str = typer.Option(..., help="Message text."),
    id: str | None = typer.Option(None, "--id", help="Idempotency key (default: random)."),
    region: str | None = typer.Option(None, help="ISO country for a national number."),
    sender: str | None = typer.Option(None, "--from", help="Sender id or number."),
    kind: str = typer.Option("transactional", help="otp | transactional | marketing"),
    config_path: Path | None = ConfigOption,
) -> None:
    """Publish one request to the sms exchange and print its id."""
    from smsrelay.client import AsyncClient

    settings = load_settings(config_path)
    fields: dict[str, Any] = {"id": id or uuid.uuid4().hex, "to": to, "body": body, "kind": kind}
    fields.update({k: v for k, v in {"region": region, "from": sender}.items() if v})

    async def publish() -> str:
        async with AsyncClient(settings.amqp_url) as client:
            return await client.send(**fields)

    typer.echo(run(publish(), settings))


@app.command()
def status(message_id: str, config_path: Path | None = ConfigOption) -> None:
    """Show a message's state and every attempt."""
    from smsrelay.store import SqlStore

    settings = load_settings(config_path)

    async def fetch() -> MessageRecord | None:
        require_existing_sqlite(settings.database_url)
        store = SqlStore.from_url(settings.database_url)
        try:
            return await store.get(message_id)
        finally:
            await store.close()

    record = run(fetch(), settings)
    if record is None:
        typer.echo(f"no message with id {message_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(format_record(record))


def format_record(record: MessageRecord) -> str:
    """A message and its attempts as a plain-text table."""
    lines = [
        f"id        {record.id}",
        f"to        {mask(record.to)} ({record.country})",
        f"state     {record.state.value}"
        + ("  (possible duplicate)" if record.possible_duplicate else "")
        + (f"  (resent {record.resends}x)" if record.resends else ""),
        f"provider  {record.provider or '-'}  {record.provider_message_id or ''}".rstrip(),
    ]
    if record.error_code:
        lines.append(f"error     {record.error_code}: {record.error_message}")
    lines.append("")
    lines.append(f"{'#':>2}  {'provider':<14} {'outcome':<12} {'started':<26} {'ms':>7}  detail")
    for a in record.attempts:
        ms = (
            f"{(a.finished_at - a.started_at).total_seconds() * 1000:.0f}" if a.finished_at else "-"
        )
        detail = a.provider_message_id or (
            f"{a.error_code}: {a.error_message}" if a.error_code else ""
        )
        started = a.started_at.isoformat(timespec="milliseconds")
        lines.append(
            f"{a.number:>2}  {a.provider:<14} {a.outcome:<12} {started:<26} {ms:>7}  {detail}"
        )
    return "\n".join(lines)


@app.command()
def resend(
    ids: list[str] = typer.Argument(None, help="Ids of failed messages."),
    failed_since: str | None = typer.Option(
        None,
        "--failed-since",
        help="Also every message that ended failed this recently: 1h, 30m, 2d.",
    ),
    config_path: Path | None = ConfigOption,
) -> None:
    """Send failed messages again under the same id (a new attempt, counted in the record)."""
    from smsrelay.resend import parse_duration
    from smsrelay.resend import resend as resend_all
    from smsrelay.store import SqlStore

    if not ids and failed_since is None:
        raise fail("name the messages to resend, or pass --failed-since 1h", 2)
    try:
        window = parse_duration(failed_since) if failed_since else None
    except ValueError as exc:
        raise fail(f"--failed-since: {exc}", 2) from None
    settings = load_settings(config_path)

    async def go() -> list[Outcome]:
        require_existing_sqlite(settings.database_url)
        store = SqlStore.from_url(settings.database_url)
        try:
            chosen = list(ids or [])
            if window is not None:
                since = await store.failed_since(datetime.now(UTC) - window)
                chosen += [i for i in since if i not in chosen]
            return await resend_all(store, settings.amqp_url, chosen)
        finally:
            await store.close()

    outcomes = run(go(), settings)
    for outcome in outcomes:
        if outcome.problem:
            typer.echo(f"warning: {outcome.id} not resent: {outcome.problem}", err=True)
        else:
            typer.echo(f"resent {outcome.id}")
    typer.echo(f"{sum(1 for o in outcomes if not o.problem)} resent", err=True)
    if any(o.problem for o in outcomes):
        raise typer.Exit(1)


@app.command()
def migrate(config_path: Path | None = ConfigOption) -> None:
    """Create or upgrade the database schema."""
    from smsrelay.store import SqlStore, upgrade

    settings = load_settings(config_path)

    async def upgrade_schema() -> None:
        store = SqlStore.from_url(settings.database_url)
        try:
            await upgrade(store.engine)
        finally:
            await store.close()

    run(upgrade_schema(), settings)
    typer.echo("database is at the latest schema")


@app.command()
def demo(config_path: Path | None = ConfigOption) -> None:
    """Run a worker on embedded defaults, send sample messages, print their outcomes."""
    from smsrelay.demo import demo_settings, run_demo

    if config_path:
        settings = load_settings(config_path)
    else:
        try:
            settings = demo_settings()
        except ConfigError as exc:  # an SMSRELAY_* variable the demo cannot use
            raise fail(str(exc), 2) from None
    sys.exit(run(run_demo(settings), settings))


def main() -> None:
    """Console-script entry point."""
    app()


@topology_app.command("apply")
def topology_apply(config_path: Path | None = ConfigOption) -> None:
    """Declare every exchange and queue (idempotent): how a deployment gets the OTP lane.

    Run it, or upgrade the workers, before producers publish on ``sms.otp``: a lane
    message published before the queue exists is returned to its producer.
    """
    settings = load_settings(config_path)
    run(_apply_topology(settings), settings)
    typer.echo("topology applied")


async def _apply_topology(settings: Settings) -> None:

    from smsrelay.amqp import declare_retry_queues
    from smsrelay.topology import (
        declare_alerts_exchange,
        declare_events_exchange,
        declare_resend_topology,
        declare_send_topology,
    )

    async with await brokers.connect(settings.amqp_url) as connection:
        channel = await connection.channel()
        await declare_send_topology(channel)
        await declare_retry_queues(channel, settings.retry.tiers)
        await declare_resend_topology(channel)
        await declare_events_exchange(channel)
        await declare_alerts_exchange(channel)
