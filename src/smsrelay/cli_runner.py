"""What every command does first and last: read settings once, run, explain failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from smsrelay import logging as smslog
from smsrelay import settings as config
from smsrelay.cli_errors import EXIT_CODE, explain
from smsrelay.errors import ConfigError

T = TypeVar("T")
ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file (else SMSRELAY_CONFIG).")


def load_settings(path: Path | None) -> config.Settings:
    """Settings from ``path`` and the environment; a configuration error exits 2."""
    try:
        settings = config.load(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CODE) from None
    smslog.configure(settings.log_format, settings.log_level)
    for name in config.unknown_variables():
        # The name only: the value may be a secret.
        smslog.get_logger(__name__).warning("unknown_variable_ignored", variable=name)
    return settings


def run(
    coro: Coroutine[Any, Any, T], settings: config.Settings | None, *, fast_loop: bool = False
) -> T:
    """Run a command's coroutine; a failure a person can fix becomes one line and exit 2.

    ``fast_loop``: on uvloop when it is installed (the worker: its event loop is its
    bottleneck), else on asyncio's own loop.
    """
    try:
        with asyncio.Runner(loop_factory=_fast_loop_factory() if fast_loop else None) as runner:
            return runner.run(coro)
    except Exception as exc:
        message = explain(exc, settings)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(EXIT_CODE) from None


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it can be imported (not on Windows): ~20 % less CPU per message."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
