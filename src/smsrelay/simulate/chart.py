"""The run as a picture: per country, each provider's share of traffic and the delivery rate
over (simulated) time, the timed events marked. A static PNG drawn with matplotlib (the
``sim`` extra); nothing is drawn without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTALL_HINT = "the chart needs matplotlib: pip install 'smsrelay[sim]'"


def draw(report: dict[str, Any], path: Path) -> Path:
    """Write the chart of ``report`` to ``path`` (PNG); ``ImportError`` without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    countries = report["series"]["countries"]
    t = report["series"]["t"]
    width = report["series"]["bucket_s"]
    fig, axes = plt.subplots(
        len(countries), 1, figsize=(11, 2.6 * len(countries) + 1.2), sharex=True, squeeze=False
    )
    colours = _colours(countries)
    for ax, (country, data) in zip(axes[:, 0], countries.items(), strict=True):
        _panel(ax, country, data, t, width, colours, report)
    axes[-1, 0].set_xlabel("simulated seconds")
    figures = report["cost_per_delivered"]
    fig.suptitle(
        f"{report['scenario']} ({report['strategy']}): cost per delivered "
        f"{_money(figures['run'])} vs optimum {_money(figures['optimum'])} "
        f"({_pct(figures['vs_optimum'])}), baseline {report['baseline_provider']} "
        f"{_money(figures['baseline'])} ({_pct(figures['vs_baseline'])})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel(
    ax: Any,
    country: str,
    data: dict[str, Any],
    t: list[float],
    width: float,
    colours: dict[str, str],
    report: dict[str, Any],
) -> None:
    mids = [x + width / 2 for x in t]
    shares = {p: [v or 0.0 for v in values] for p, values in data["share"].items()}
    if shares:
        ax.stackplot(
            mids,
            *shares.values(),
            labels=[f"share {p}" for p in shares],
            colors=[colours[p] for p in shares],
            alpha=0.55,
        )
    rate = [float("nan") if v is None else v for v in data["delivery_rate"]]
    ax.plot(mids, rate, color="black", linewidth=2, label="delivery rate")
    for event in report["events"]:
        if event["country"] == country:
            ax.axvline(event["at_s"], color="red", linestyle="--", linewidth=1)
            moved = event["moved_after_s"]
            note = f" (moved in {moved:g} s)" if moved is not None and event["degrades"] else ""
            ax.annotate(
                event["label"] + note,
                (event["at_s"], 1.02),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color="red",
            )
    for alert in report.get("alerts", []):
        if alert["country"] == country:
            # Each alert a subscriber of sms.alerts got, at its simulated time.
            ax.axvline(alert["t_s"], color="purple", linestyle=":", linewidth=1)
            ax.annotate(
                f"alert {alert['type']} {alert['provider']}",
                (alert["t_s"], 0.05),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="purple",
                rotation=90,
            )
    ax.set_ylim(0, 1.0)
    ax.set_ylabel(country)
    ax.legend(loc="lower left", fontsize=7, ncol=4)


def _colours(countries: dict[str, Any]) -> dict[str, str]:
    names = sorted({p for data in countries.values() for p in data["share"]} - {"none"})
    palette = ["#4C72B0", "#DD8452", "#55A868", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
    out = {p: palette[n % len(palette)] for n, p in enumerate(names)}
    out["none"] = "#C44E52"
    return out


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"
