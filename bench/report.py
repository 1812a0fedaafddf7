"""From measured cells to the report: medians with min-max, ratios, targets, markdown + JSON.

Every figure is the median over runs, with the smallest and largest run beside it.
The targets come from the issue that asked for this benchmark; each verdict says the
numbers it compared.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

SMSRELAY = "smsrelay-sqlite"
SMSRELAY_PG = "smsrelay-pg"
LIMIT = "limit"
PEERS = ("celery-prefork", "celery-threads", "celery-gevent")

# Issue 10's targets, each a ratio to a pipeline measured in the same run.
CPU_FACTOR = 1.8  # worker CPU per message in the drain ≤ 1.8x the bare pipeline's
RATE_FACTOR = 0.55  # drain rate ≥ 0.55x the bare pipeline's
PEER_FACTOR = 2.0  # drain rate ≥ 2x Celery's best pool, at every latency
P50_SLACK_MS = 5.0  # at 50% of its own drain rate: p50 ≤ the bare pipeline's p50 + 5 ms
P99_SLACK_MS = 15.0  # and p99 ≤ the bare pipeline's p99 + 15 ms

METRICS: list[tuple[str, str]] = [
    ("drain", "msgs_per_s"),
    ("drain", "cpu_us_per_msg"),
    ("drain", "broker_cpu_us_per_msg"),
    ("drain", "peak_rss_mb"),
    ("drain", "max_in_flight"),
    ("drain", "mean_in_flight"),
    ("steady", "offered_per_s"),
    ("steady", "p50_ms"),
    ("steady", "p99_ms"),
    ("steady", "cpu_us_per_msg"),
]

# Reference figures from the issue, for this machine kind: (pipeline, latency) → (msg/s,
# must the harness reproduce it before its other figures are trusted?).
REFERENCE = {
    (LIMIT, 0): (3400.0, True),
    (LIMIT, 50): (2800.0, False),
    ("celery-prefork", 0): (890.0, False),
    ("celery-prefork", 50): (37.0, True),
}
REPRODUCED_WITHIN = 0.35


def spread(values: list[Any]) -> dict[str, float] | None:
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present)}


def summarise(cells: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """pipeline → latency → "drain.msgs_per_s" … → {median, min, max}."""
    summary: dict[str, dict[int, dict[str, Any]]] = {}
    for cell in cells:
        summary.setdefault(cell["pipeline"], {}).setdefault(cell["latency_ms"], {})
    for name, by_latency in summary.items():
        for latency, figures in by_latency.items():
            mine = [c for c in cells if c["pipeline"] == name and c["latency_ms"] == latency]
            for mode, metric in METRICS:
                figures[f"{mode}.{metric}"] = spread([c.get(mode, {}).get(metric) for c in mine])
            figures["runs"] = len([c for c in mine if "drain" in c])
            figures["capped"] = any(c.get("drain", {}).get("capped") for c in mine)
            figures["errors"] = [c["error"] for c in mine if "error" in c]
    return summary


def _median(summary: dict[str, Any], name: str, latency: int, key: str) -> float | None:
    figure = summary.get(name, {}).get(latency, {}).get(key)
    return figure["median"] if figure else None


def best_peer(summary: dict[str, Any], latency: int) -> tuple[str | None, float | None]:
    """The Celery pool with the highest median drain rate at ``latency``."""
    rates = [(p, _median(summary, p, latency, "drain.msgs_per_s")) for p in PEERS]
    present = [(p, r) for p, r in rates if r is not None]
    return max(present, key=lambda pr: pr[1]) if present else (None, None)


def ratios(summary: dict[str, Any], latencies: list[int]) -> list[dict[str, Any]]:
    rows = []
    for latency in latencies:
        limit = _median(summary, LIMIT, latency, "drain.msgs_per_s")
        peer, peer_rate = best_peer(summary, latency)
        for name in summary:
            if not name.startswith("smsrelay"):
                continue
            rate = _median(summary, name, latency, "drain.msgs_per_s")
            if rate is None:
                continue
            rows.append(
                {
                    "pipeline": name,
                    "latency_ms": latency,
                    "vs_limit": _ratio(rate, limit),
                    "vs_peer": _ratio(rate, peer_rate),
                    "peer": peer,
                }
            )
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def targets(summary: dict[str, Any], latencies: list[int]) -> list[dict[str, Any]]:
    """Each target of the issue with its verdict: met, NOT met, or n/a (not measured)."""
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        threshold: float | None,
        ok: Callable[..., bool],
        detail: str,
    ) -> None:
        measured = value is not None and threshold is not None
        verdict = ("met" if ok(value, threshold) else "NOT met") if measured else "n/a"
        out.append(
            {
                "target": name,
                "value": value,
                "threshold": threshold,
                "verdict": verdict,
                "detail": detail,
            }
        )

    def at_least(v: float, t: float) -> bool:
        return v >= t

    def at_most(v: float, t: float) -> bool:
        return v <= t

    for name in (SMSRELAY, SMSRELAY_PG):
        for latency in latencies:
            mine_cpu = _median(summary, name, latency, "drain.cpu_us_per_msg")
            limit_cpu = _median(summary, LIMIT, latency, "drain.cpu_us_per_msg")
            add(
                f"{name} CPU/msg ≤ {CPU_FACTOR:g}x limit's at {latency} ms",
                mine_cpu,
                round(CPU_FACTOR * limit_cpu, 1) if limit_cpu else None,
                at_most,
                f"{name} {_fmt(mine_cpu)} µs/msg, limit {_fmt(limit_cpu)} µs/msg"
                + (f" ({mine_cpu / limit_cpu:.2f}x)" if mine_cpu and limit_cpu else ""),
            )
            mine = _median(summary, name, latency, "drain.msgs_per_s")
            limit = _median(summary, LIMIT, latency, "drain.msgs_per_s")
            add(
                f"{name} drain ≥ {RATE_FACTOR:g}x limit at {latency} ms",
                mine,
                round(RATE_FACTOR * limit, 1) if limit else None,
                at_least,
                f"{name} {_fmt(mine)} msg/s, limit {_fmt(limit)} msg/s",
            )
            peer, peer_rate = best_peer(summary, latency)
            add(
                f"{name} ≥ {PEER_FACTOR:g}x the peer's best pool at {latency} ms",
                mine,
                round(PEER_FACTOR * peer_rate, 1) if peer_rate else None,
                at_least,
                f"{name} {_fmt(mine)} msg/s, {peer} {_fmt(peer_rate)} msg/s",
            )
    in_flight = _median(summary, SMSRELAY, 200, "drain.max_in_flight")
    add(
        "smsrelay holds ≥ 1,000 sends in flight at 200 ms",
        in_flight,
        1000.0,
        at_least,
        "most requests the fake provider held at once in the 200 ms drain (prefetch 1,200); "
        f"held on average: {_fmt(_median(summary, SMSRELAY, 200, 'drain.mean_in_flight'))}",
    )
    for name in (SMSRELAY, SMSRELAY_PG):
        for latency in latencies:
            for pct, slack in (("p50", P50_SLACK_MS), ("p99", P99_SLACK_MS)):
                mine = _median(summary, name, latency, f"steady.{pct}_ms")
                limit = _median(summary, LIMIT, latency, f"steady.{pct}_ms")
                add(
                    f"{name} {pct} at 50% load ≤ limit's {pct} + {slack:g} ms at {latency} ms",
                    mine,
                    round(limit + slack, 1) if limit is not None else None,
                    at_most,
                    f"{name} {pct} {_fmt(mine, 1)} ms, limit {pct} {_fmt(limit, 1)} ms",
                )
    rss = _median(summary, SMSRELAY, 200, "drain.peak_rss_mb")
    add(
        "peak RSS ≤ 150 MB, one worker, 1,000 in flight",
        rss,
        150.0,
        at_most,
        f"peak RSS during the 200 ms drain; in flight then: {_fmt(in_flight)}",
    )
    return out


def calibration(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's reference figures against this run's: the harness is trusted if close."""
    rows = []
    for (name, latency), (reference, required) in REFERENCE.items():
        measured = _median(summary, name, latency, "drain.msgs_per_s")
        if measured is None:
            continue
        close = abs(measured / reference - 1) <= REPRODUCED_WITHIN
        rows.append(
            {
                "pipeline": name,
                "latency_ms": latency,
                "reference": reference,
                "measured": measured,
                "reproduced": close,
                "required": required,
            }
        )
    return rows


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}" if digits or abs(value) >= 10 else f"{value:.2g}"


def _cell(figure: dict[str, float] | None, digits: int = 0) -> str:
    if not figure:
        return "—"
    mid, lo, hi = (_fmt(figure[k], digits) for k in ("median", "min", "max"))
    return mid if lo == hi else f"{mid} ({lo}-{hi})"


def markdown(report: dict[str, Any]) -> str:
    summary, meta = report["summary"], report["meta"]
    lines = [
        f"N = {meta['n']:,} per drain, {meta['runs']} run(s), prefetch {meta['prefetch']}; "
        "each figure: median (min-max) over runs.",
        "",
        "| pipeline | latency | drain msg/s | p50 ms | p99 ms | steady msg/s | CPU µs/msg drain "
        "| CPU µs/msg steady | broker µs/msg | peak RSS MB | in flight max | mean |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, by_latency in summary.items():
        for latency, f in sorted(by_latency.items()):
            capped = "*" if f["capped"] else ""
            lines.append(
                f"| {name} | {latency} ms | {_cell(f['drain.msgs_per_s'])}{capped} "
                f"| {_cell(f['steady.p50_ms'], 1)} | {_cell(f['steady.p99_ms'], 1)} "
                f"| {_cell(f['steady.offered_per_s'])} | {_cell(f['drain.cpu_us_per_msg'])} "
                f"| {_cell(f['steady.cpu_us_per_msg'])} "
                f"| {_cell(f['drain.broker_cpu_us_per_msg'])} "
                f"| {_cell(f['drain.peak_rss_mb'])} | {_cell(f['drain.max_in_flight'])} "
                f"| {_cell(f['drain.mean_in_flight'])} |"
            )
    if any(f["capped"] for by in summary.values() for f in by.values()):
        lines += [
            "",
            f"\\* too slow to drain N within {meta['drain_cap']} s: "
            "rate measured over that window.",
        ]
    lines += [
        "",
        "**Ratios** (drain msg/s, medians)",
        "",
        "| pipeline | latency | ÷ limit | ÷ peer's best | peer's best pool |",
        "|---|--:|--:|--:|---|",
    ]
    for r in report["ratios"]:
        lines.append(
            f"| {r['pipeline']} | {r['latency_ms']} ms | {_fmt(r['vs_limit'], 2)} "
            f"| {_fmt(r['vs_peer'], 2)} | {r['peer'] or '—'} |"
        )
    lines += [
        "",
        "**Targets**",
        "",
        "| target | verdict | measured | threshold | detail |",
        "|---|---|--:|--:|---|",
    ]
    for t in report["targets"]:
        lines.append(
            f"| {t['target']} | {t['verdict']} | {_fmt(t['value'], 1)} "
            f"| {_fmt(t['threshold'], 1)} | {t['detail']} |"
        )
    if report["calibration"]:
        lines += [
            "",
            "**Calibration** (the issue's figures for this machine kind; the harness must "
            "reproduce the required ones before its other figures are trusted)",
            "",
            "| pipeline | latency | reference msg/s | measured msg/s | within ±35% | required |",
            "|---|--:|--:|--:|---|---|",
        ]
        for c in report["calibration"]:
            lines.append(
                f"| {c['pipeline']} | {c['latency_ms']} ms | {_fmt(c['reference'])} "
                f"| {_fmt(c['measured'])} | {'yes' if c['reproduced'] else 'NO'} "
                f"| {'yes' if c['required'] else 'no'} |"
            )
    errors = [
        (n, lat, e) for n, by in summary.items() for lat, f in by.items() for e in f["errors"]
    ]
    if errors:
        lines += ["", "**Errors**", ""] + [f"- {n} @ {lat} ms: {e[:300]}" for n, lat, e in errors]
    return "\n".join(lines) + "\n"


def build(cells: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    summary = summarise(cells)
    return {
        "meta": meta,
        "summary": summary,
        "ratios": ratios(summary, meta["latencies"]),
        "targets": targets(summary, meta["latencies"]),
        "calibration": calibration(summary),
        "cells": cells,
    }


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(markdown(report))
    return json_path, md_path
