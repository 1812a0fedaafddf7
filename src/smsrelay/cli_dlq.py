"""``smsrelay dlq list | show | drop | replay``: the dead letters of ``sms.dead``.

Naming an id that is not there is an error (exit 1), not "0 done". Replaying a request
smsrelay would refuse again (it is invalid, not unlucky) needs ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from smsrelay.cli_runner import ConfigOption, fail, load_settings, run
from smsrelay.dlq import Action, DeadMessage, drop, list_dead, walk
from smsrelay.settings import Settings

# Dead letters read to find ids (each held unacked until the walk ends).
SCAN_LIMIT = 100_000

dlq_app = typer.Typer(
    help="Inspect, drop and replay the dead-letter queue sms.dead.", no_args_is_help=True
)


@dlq_app.command("list")
def dlq_list(config_path: Path | None = ConfigOption) -> None:
    """List dead-lettered requests with the reason each was refused."""
    settings = load_settings(config_path)
    dead = run(list_dead(settings.amqp_url), settings)
    for item in dead:
        typer.echo(f"{item.id or '-':<40} {item.size:>8}B  {item.reason}")
    typer.echo(f"{len(dead)} dead-lettered", err=True)


@dlq_app.command("show")
def dlq_show(message_id: str, config_path: Path | None = ConfigOption) -> None:
    """Show one dead letter: reason, headers, and the request (number masked, text counted)."""
    settings = load_settings(config_path)
    found = run(list_dead(settings.amqp_url, limit=SCAN_LIMIT), settings)
    matches = [d for d in found if d.id == message_id]
    if not matches:
        raise fail(f"no dead letter with id {message_id}")
    for dead in matches:
        typer.echo(f"id        {dead.id}")
        typer.echo(f"reason    {dead.reason}")
        typer.echo(f"size      {dead.size} bytes")
        typer.echo(f"replay    {_verdict(dead)}")
        for name, value in sorted(dead.headers.items()):
            typer.echo(f"header    {name}: {value}")
        typer.echo(f"request   {dead.redacted_body()}")


def _verdict(dead: DeadMessage) -> str:
    if dead.refusal is None:
        return "valid now: `smsrelay dlq replay` would send it"
    return f"would be refused again ({dead.refusal}): fix the producer, or drop it"


def _missing(settings: Settings, ids: list[str]) -> list[str]:
    present = {d.id for d in run(list_dead(settings.amqp_url, limit=SCAN_LIMIT), settings)}
    return [i for i in ids if i not in present]


@dlq_app.command("drop")
def dlq_drop(ids: list[str], config_path: Path | None = ConfigOption) -> None:
    """Delete the dead letters with these ids for good."""
    settings = load_settings(config_path)
    missing = _missing(settings, ids)
    if missing:
        raise fail(f"no dead letter with id {', '.join(missing)} (nothing dropped)")
    typer.echo(f"dropped {run(drop(settings.amqp_url, set(ids)), settings)}")


@dlq_app.command("replay")
def dlq_replay(
    ids: list[str] = typer.Argument(None, help="Ids to replay (or --all)."),
    all_: bool = typer.Option(False, "--all", help="Replay every dead letter."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be replayed; do it not."),
    force: bool = typer.Option(
        False, "--force", help="Replay even requests smsrelay would refuse again."
    ),
    config_path: Path | None = ConfigOption,
) -> None:
    """Republish dead letters to the sms exchange (those named, or --all)."""
    if not ids and not all_:
        raise fail("name the dead letters to replay, or pass --all (see `smsrelay dlq list`)", 2)
    settings = load_settings(config_path)
    wanted = None if all_ else set(ids)
    if wanted is not None:
        missing = _missing(settings, sorted(wanted))
        if missing:
            raise fail(f"no dead letter with id {', '.join(missing)} (nothing replayed)")
    if dry_run:
        plan = run(walk(settings.amqp_url, lambda _: "keep"), settings)
        _report([(d, _choose(d, wanted, force)) for d, _ in plan], wanted, "would replay")
        return
    done = run(walk(settings.amqp_url, lambda d: _choose(d, wanted, force)), settings)
    skipped = _report(done, wanted, "replayed")
    if skipped:
        raise typer.Exit(1)


def _choose(dead: DeadMessage, wanted: set[str] | None, force: bool) -> Action:
    if wanted is not None and dead.id not in wanted:
        return "keep"
    return "replay" if force or dead.refusal is None else "keep"


def _report(done: list[tuple[DeadMessage, Action]], wanted: set[str] | None, verb: str) -> int:
    """Print what was (or would be) replayed and warn of what was held back; the count held."""
    skipped = 0
    for dead, action in done:
        asked = wanted is None or dead.id in wanted
        if action == "replay" and verb == "would replay":
            typer.echo(f"would replay {dead.id or '-'}")
        elif action == "keep" and asked and dead.refusal is not None:
            skipped += 1
            typer.echo(
                f"warning: {dead.id or '-'} not replayed: smsrelay would refuse it again "
                f"({dead.refusal}); --force to replay it anyway",
                err=True,
            )
    count = sum(1 for _, action in done if action == "replay")
    typer.echo(f"{verb} {count}")
    return skipped
