"""The ``smsrelay`` command: worker, api, send, status, dlq, migrate, demo.

Each command reads settings once (``--config`` or ``SMSRELAY_CONFIG``, then
``SMSRELAY_*`` variables) and refuses to start on a configuration error, naming the key.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from smsrelay import logging as smslog
from smsrelay import settings as config
from smsrelay.cli_prices import prices_app
from smsrelay.errors import ConfigError, InvalidRequest
from smsrelay.phone import mask
from smsrelay.store import MessageRecord

app = typer.Typer(help="smsrelay: an SMS gateway behind RabbitMQ.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Inspect and replay the dead-letter queue sms.dead.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(prices_app, name="prices")
topology_app = typer.Typer(help="The broker's exchanges and queues.", no_args_is_help=True)
app.add_typer(topology_app, name="topology")

T = TypeVar("T")
ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file (else SMSRELAY_CONFIG).")


def _settings(path: Path | None) -> config.Settings:
    try:
        settings = config.load(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    smslog.configure(settings.log_format, settings.log_level)
    for name in config.unknown_variables():
        # The name only: the value may be a secret.
        smslog.get_logger(__name__).warning("unknown_variable_ignored", variable=name)
    return settings


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker(config_path: Path | None = ConfigOption) -> None:
    """Consume sms.send and deliver through the configured providers until SIGTERM."""
    from smsrelay.runtime import run_worker

    _run(run_worker(_settings(config_path)))


@app.command()
def api(
    config_path: Path | None = ConfigOption,
    with_worker: bool = typer.Option(
        False, "--worker", help="Also consume sms.send in this process (one /metrics for both)."
    ),
) -> None:
    """Serve the HTTP API on api_host:api_port (messages, receipts, health, metrics)."""
    from smsrelay.api.server import run_api

    _run(run_api(_settings(config_path), with_worker=with_worker))


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

    settings = _settings(config_path)
    fields: dict[str, Any] = {"id": id or uuid.uuid4().hex, "to": to, "body": body, "kind": kind}
    fields.update({k: v for k, v in {"region": region, "from": sender}.items() if v})

    async def publish() -> str:
        async with AsyncClient(settings.amqp_url) as client:
            return await client.send(**fields)

    try:
        typer.echo(_run(publish()))
    except InvalidRequest as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def status(message_id: str, config_path: Path | None = ConfigOption) -> None:
    """Show a message's state and every attempt."""
    from smsrelay.store import SqlStore

    settings = _settings(config_path)

    async def fetch() -> MessageRecord | None:
        store = SqlStore.from_url(settings.database_url)
        try:
            return await store.get(message_id)
        finally:
            await store.close()

    record = _run(fetch())
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
        + ("  (possible duplicate)" if record.possible_duplicate else ""),
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


@dlq_app.command("list")
def dlq_list(config_path: Path | None = ConfigOption) -> None:
    """List dead-lettered requests with the reason each was refused."""
    from smsrelay.dlq import list_dead

    settings = _settings(config_path)
    dead = _run(list_dead(settings.amqp_url))
    for item in dead:
        typer.echo(f"{item.id or '-':<40} {item.size:>8}B  {item.reason}")
    typer.echo(f"{len(dead)} dead-lettered", err=True)


@dlq_app.command("replay")
def dlq_replay(
    ids: list[str] = typer.Argument(None), config_path: Path | None = ConfigOption
) -> None:
    """Republish dead letters (all, or those with the given ids) to the sms exchange."""
    from smsrelay.dlq import replay

    settings = _settings(config_path)
    count = _run(replay(settings.amqp_url, set(ids) if ids else None))
    typer.echo(f"replayed {count}")


@app.command()
def migrate(config_path: Path | None = ConfigOption) -> None:
    """Create or upgrade the database schema."""
    from smsrelay.store import SqlStore, upgrade

    settings = _settings(config_path)

    async def run() -> None:
        store = SqlStore.from_url(settings.database_url)
        try:
            await upgrade(store.engine)
        finally:
            await store.close()

    _run(run())
    typer.echo("database is at the latest schema")


@app.command()
def demo(config_path: Path | None = ConfigOption) -> None:
    """Run a worker on embedded defaults, send sample messages, print their outcomes."""
    from smsrelay.demo import run_demo

    settings = _settings(config_path) if config_path else None
    sys.exit(_run(run_demo(settings)))


def main() -> None:
    """Console-script entry point."""
    app()


@topology_app.command("apply")
def topology_apply(config_path: Path | None = ConfigOption) -> None:
    """Declare every exchange and queue (idempotent): how a deployment gets the OTP lane.

    Run it, or upgrade the workers, before producers publish on ``sms.otp``: a lane
    message published before the queue exists is returned to its producer.
    """
    _run(_apply_topology(_settings(config_path)))
    typer.echo("topology applied")


async def _apply_topology(settings: config.Settings) -> None:
    import aio_pika

    from smsrelay.amqp import declare_retry_queues
    from smsrelay.topology import declare_events_exchange, declare_send_topology

    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel()
        await declare_send_topology(channel)
        await declare_retry_queues(channel, settings.retry.tiers)
        await declare_events_exchange(channel)
