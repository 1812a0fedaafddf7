"""``smsrelay route explain``: the plan for a number (and text), as the worker would follow it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from smsrelay.cli_runner import ConfigOption, load_settings, run
from smsrelay.errors import InvalidRequest
from smsrelay.routing import Plan
from smsrelay.settings import Settings

route_app = typer.Typer(help="Routing: explain the plan for a destination.", no_args_is_help=True)


async def _plan(
    settings: Settings, to: str, body: str | None, kind: str | None, message_id: str | None
) -> Plan:
    from smsrelay.routing.configured import configured_router, explain, stored_prices
    from smsrelay.store import SqlStore, upgrade

    request = explain_request_or_exit(to, body, kind, message_id)
    store = SqlStore.from_url(settings.database_url)
    try:
        await upgrade(store.engine)
        prices = await stored_prices(store.engine, settings)
    finally:
        await store.close()
    return explain(configured_router(settings, prices), request)


def explain_request_or_exit(
    to: str, body: str | None, kind: str | None, message_id: str | None
) -> Any:
    """The request to explain, or exit 2 with the reason it is not a valid request."""
    from smsrelay.routing.configured import explain_request

    try:
        return explain_request(to, body, kind, message_id)
    except InvalidRequest as exc:
        typer.echo(f"error: {exc.reason}", err=True)
        raise typer.Exit(2) from None


@route_app.command("explain")
def explain_command(
    to: str = typer.Option(..., "--to", help="Destination number, E.164 (+447911123456)."),
    body: str | None = typer.Option(None, "--body", help="The text (default: one GSM-7 part)."),
    kind: str | None = typer.Option(None, "--kind", help="Message kind (otp, transactional…)."),
    message_id: str | None = typer.Option(
        None, "--id", help="Message id (weighted picks and exploration follow it)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    config: Path | None = ConfigOption,
) -> None:
    """Print the destination as parsed, the route and strategy, and every candidate."""
    settings = load_settings(config)
    plan = run(_plan(settings, to, body, kind, message_id), settings)
    data = plan.explain()
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in render(data):
        typer.echo(line)


def render(data: dict[str, Any]) -> list[str]:
    """The plan in lines a person reads."""
    route = data["route"]
    lines = [
        f"destination  {data['to']}  country {data['country']}: {data['country_reason']}",
        f"route        {route['key']} ({route['why']})",
        f"strategy     {route['strategy']}",
        f"order        {' → '.join(data['order']) or '(nothing to try)'}",
        "",
        f"{'#':>2}  {'provider':<16} {'price':>10} {'cur':<3} {'parts':>5} {'enc':<5} "
        f"{'est. cost':>11} {'rate':>6} {'samples':>7} {'breaker':<9} {'limits':<10} reason",
    ]
    for c in data["candidates"]:
        place = str(c["place"]) if c["place"] is not None else "-"
        rate = f"{c['delivery_rate']:.3f}" if c["delivery_rate"] is not None else "-"
        limits = "cap" if c["cap_reached"] else "rate" if c["rate_limited"] else "ok"
        lines.append(
            f"{place:>2}  {c['provider']:<16} {c['price'] or '-':>10} {c['currency'] or '-':<3} "
            f"{c['parts']:>5} {c['encoding']:<5} {c['estimated_cost'] or '-':>11} {rate:>6} "
            f"{c['samples']:>7} {c['breaker']:<9} {limits:<10} {c['reason']}"
        )
    return lines
