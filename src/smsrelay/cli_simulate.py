"""``smsrelay simulate SCENARIO.yaml``: run a market scenario through a real worker.

The broker comes from the usual settings (``--config``, ``SMSRELAY_AMQP_URL``); the run
takes a vhost of its own on it and a fresh SQLite store in the output directory
(or ``--database-url``). It prints the figures and writes ``report.json`` and
``chart.png`` there.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from smsrelay import logging as smslog
from smsrelay.cli_runner import ConfigOption, load_settings, run


def simulate(
    scenario_path: Path = typer.Argument(..., metavar="SCENARIO.yaml", help="The scenario file."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Directory for report.json and chart.png (simulation-<name>)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Store for the run (a fresh SQLite file in --out)."
    ),
    chart: bool = typer.Option(True, "--chart/--no-chart", help="Draw chart.png (needs [sim])."),
    guard_mode: str | None = typer.Option(
        None,
        "--guard-mode",
        help="Override the scenario's guard.mode (off, monitor, enforce): the same attack, "
        "monitored.",
    ),
    config_path: Path | None = ConfigOption,
) -> None:
    """Run a simulated market: real worker and broker, simulated providers; print the economics."""
    from smsrelay.errors import ScenarioError
    from smsrelay.simulate import chart as charts
    from smsrelay.simulate.runner import default_database, run_scenario
    from smsrelay.simulate.scenario import load_scenario

    settings = load_settings(config_path)
    # A line per message would bury the figures: the run logs warnings only.
    smslog.configure(settings.log_format, "warning")
    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if guard_mode is not None and guard_mode not in {"off", "monitor", "enforce"}:
        typer.echo(f"error: --guard-mode: {guard_mode!r} is not off, monitor or enforce", err=True)
        raise typer.Exit(2)
    out_dir = out or Path(f"simulation-{scenario.name}")
    url = database_url or default_database(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run(
        run_scenario(
            scenario,
            amqp_url=settings.amqp_url,
            database_url=url,
            progress=lambda line: typer.echo(f"  {line}", err=True),
            guard_mode=guard_mode,
        ),
        settings,
    )
    report: dict[str, Any] = {"command": shlex.join(["smsrelay", *sys.argv[1:]]), **result.report}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(summary(report))
    if chart:
        try:
            typer.echo(f"chart     {charts.draw(report, out_dir / 'chart.png')}")
        except ImportError:
            typer.echo(f"warning: {charts.INSTALL_HINT}", err=True)
    typer.echo(f"report    {out_dir / 'report.json'}")


def summary(report: dict[str, Any]) -> str:
    """The figures a person reads first."""
    f = report["cost_per_delivered"]
    cur = report["currency"]
    lines = [
        f"scenario  {report['scenario']} ({report['strategy']}, time x{report['time_scale']:g})",
        f"messages  {report['messages']} sent {report['sent']} delivered {report['delivered']}"
        f" cost {report['cost']:.4f} {cur} (not taken {report['not_taken']},"
        f" no receipt {report['without_receipt']})",
        "cost per delivered message:",
        f"  run       {_v(f['run'])} {cur}",
        f"  optimum   {_v(f['optimum'])} {cur}  (run {_p(f['vs_optimum'])})",
        f"  baseline  {_v(f['baseline'])} {cur}  ({report['baseline_provider']} alone;"
        f" run {_p(f['vs_baseline'])})",
    ]
    for country, row in report["by_country"].items():
        c = row["cost_per_delivered"]
        lines.append(
            f"  {country}  delivered {_p0(row['delivery_rate'])}  run {_v(c['run'])}"
            f" optimum {_v(c['optimum'])} baseline {_v(c['baseline'])}  via {row['providers']}"
        )
    for event in report["events"]:
        moved = event["moved_after_s"]
        after = f"90 % moved after {moved:g} s" if moved is not None else "not moved"
        lines.append(
            f"event t={event['at_s']:g} s {event['label']}: "
            f"{after if event['degrades'] else 'an improvement'}"
        )
    t = report["targets"]
    lines.append(
        f"targets   within 3 % of optimum: {t['within_3pct_of_optimum']}; 30 % below baseline: "
        f"{t['30pct_below_baseline']}; moved within 120 s: {t['moved_within_120s']}"
    )
    lines.extend(_alert_lines(report))
    lines.extend(_attack_lines(report.get("attack")))
    return "\n".join(lines)


def _alert_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for a in report.get("alerts", []):
        figures = ", ".join(f"{k} {v}" for k, v in (a["figures"] or {}).items())
        lines.append(
            f"alert t={a['t_s']:g} s {a['type']} {a['provider']} {a['country']}: {figures};"
            f" action {a['action']} {a['routed_to'] or ''}".rstrip()
        )
    for r in report.get("recovery", []):
        lines.append(
            f"recovery {r['country']} from t={r['since_s']:g} s ({r['basis']}):"
            f" delivered {_p0(r['delivery_rate'])} of {r['messages']} via {r['providers']}"
            f" (target >= 95 %: {r['target_met']})"
        )
    return lines


def _attack_lines(attack: dict[str, Any] | None) -> list[str]:
    if attack is None:
        return []
    lines = [
        f"guard     mode {attack['mode']}: {attack['legit_otps']} legitimate OTPs,"
        f" {attack['legit_refused']} refused ({attack['legit_refused_share']:.3%});"
        f" rejected in store {attack['rejected_in_store']}"
    ]
    for prefix, row in attack["prefixes"].items():
        lines.append(
            f"  pumped {prefix} ({row['country']}): {row['requested']} requested,"
            f" {row['allowed_before_first_refusal']} before the first refusal,"
            f" {row['refused']} refused, {row['sent']} sent; cost refused"
            f" {row['cost_refused']:.2f}; {row['rules']}"
        )
    t = attack["targets"]
    lines.append(
        f"  cost saved {attack['cost_saved']:.2f} (would save {attack['cost_would_save']:.2f});"
        f" each prefix within 100: {t['each_prefix_refused_within_100']};"
        f" legit <= 0.5 %: {t['legit_refused_at_most_0.5pct']}"
    )
    return lines


def _v(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _p0(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
