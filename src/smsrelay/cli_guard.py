"""``smsrelay guard``: list the prefixes the pumping guard blocks, and lift a block."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from redis.exceptions import RedisError

from smsrelay.cli_runner import ConfigOption, fail, load_settings, run
from smsrelay.guard.redis_state import RedisGuardState
from smsrelay.guard.state import Block
from smsrelay.settings import Settings
from smsrelay.urls import mask_url

guard_app = typer.Typer(
    help="The pumping guard's prefix blocks: list, unblock.", no_args_is_help=True
)


def _state(settings: Settings) -> RedisGuardState:
    if settings.redis_url is None:
        raise fail(
            "without redis_url each worker keeps its own blocks (they end with it);"
            " set redis_url to share them and manage them here",
            2,
        )
    return RedisGuardState.from_url(settings.redis_url, settings.guard, settings.limits)


async def _blocks(settings: Settings) -> list[Block]:
    state = _state(settings)
    try:
        return await state.blocks(datetime.now(UTC).timestamp())
    except (RedisError, OSError) as exc:
        raise _unreachable(settings, exc) from None
    finally:
        await state.close()


async def _unblock(settings: Settings, prefix: str) -> bool:
    state = _state(settings)
    try:
        return await state.unblock(prefix, datetime.now(UTC).timestamp())
    except (RedisError, OSError) as exc:
        raise _unreachable(settings, exc) from None
    finally:
        await state.close()


def _unreachable(settings: Settings, exc: BaseException) -> typer.Exit:
    where = mask_url(settings.redis_url or "")
    return fail(f"Redis at {where} did not answer ({type(exc).__name__}); is it running?", 2)


@guard_app.command("list")
def list_blocks(config_path: Path | None = ConfigOption) -> None:
    """The blocked prefixes: the rule and figure that blocked each, until when."""
    settings = load_settings(config_path)
    blocks = run(_blocks(settings), settings)
    typer.echo(f"{'prefix':<16} {'rule':<22} {'until (UTC)':<20} {'repeat':>6}  figure")
    for b in blocks:
        until = datetime.fromtimestamp(b.until, UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{b.prefix:<16} {'guard-' + b.rule:<22} {until:<20} {b.strikes:>6}  {b.detail}")
    typer.echo(f"{len(blocks)} blocked prefixes (guard.mode {settings.guard.mode})", err=True)


@guard_app.command("unblock")
def unblock(
    prefix: str = typer.Argument(..., help="The prefix as `guard list` shows it, e.g. +4479112"),
    config_path: Path | None = ConfigOption,
) -> None:
    """Lift a prefix's block now and forget its repeats (its next block is the shortest)."""
    settings = load_settings(config_path)
    if not prefix.startswith("+") or not prefix[1:].isdigit() or len(prefix) > 20:
        raise fail(f"{prefix[:24]!r} is not a prefix like +4479112 (see `smsrelay guard list`)", 2)
    lifted = run(_unblock(settings, prefix), settings)
    if not lifted:
        typer.echo(f"{prefix} was not blocked (its repeats are forgotten all the same)")
        return
    typer.echo(f"{prefix} unblocked")
