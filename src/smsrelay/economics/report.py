"""The costs report: messages, parts, deliveries and cost per provider and country.

The figures come from the store (``smsrelay.store.costs``: the SQL); this module holds
the row, the ``--since`` and ``--by`` parsing and the table, CSV and JSON renderings.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

GROUPS = ("provider", "country")
_SINCE = re.compile(r"^([0-9]{1,5})([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class ReportError(ValueError):
    """A ``--since`` or ``--by`` that cannot be used; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class CostRow:
    """One group of sent messages (by provider and/or country, and currency).

    Costs are sums over each message's sent attempt: ``estimated_cost`` (parts x price
    when planned), ``actual_cost`` (what the provider reported, where it did).
    """

    provider: str | None
    country: str | None
    currency: str | None
    messages: int
    parts: int
    delivered: int
    estimated_cost: float | None
    actual_cost: float | None

    @property
    def cost_per_delivered(self) -> float | None:
        """Estimated cost divided by delivered messages; None without either."""
        if self.estimated_cost is None or not self.delivered:
            return None
        return round(self.estimated_cost / self.delivered, 8)

    @property
    def actual_per_delivered(self) -> float | None:
        """Actual cost divided by delivered messages; None without either."""
        if self.actual_cost is None or not self.delivered:
            return None
        return round(self.actual_cost / self.delivered, 8)

    def as_dict(self) -> dict[str, object]:
        """The row with its derived figures, for JSON and CSV."""
        return {
            **asdict(self),
            "cost_per_delivered": self.cost_per_delivered,
            "actual_per_delivered": self.actual_per_delivered,
        }


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m`` before ``now``, or an ISO date (midnight UTC)."""
    now = now or datetime.now(UTC)
    match = _SINCE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        day = datetime.fromisoformat(text.strip()[:32])
    except ValueError:
        raise ReportError(f"since {text[:32]!r}: use 7d, 12h, 30m or a date (2026-11-01)") from None
    return day.replace(tzinfo=UTC) if day.tzinfo is None else day.astimezone(UTC)


def parse_by(text: str) -> tuple[str, ...]:
    """``provider,country`` (either, both, or empty for one total row)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in GROUPS]
    if unknown or len(names) > len(GROUPS):
        raise ReportError(f"by {text[:40]!r}: a list of {', '.join(GROUPS)}")
    return tuple(dict.fromkeys(names))


COLUMNS = (
    "provider",
    "country",
    "currency",
    "messages",
    "parts",
    "delivered",
    "estimated_cost",
    "actual_cost",
    "cost_per_delivered",
    "actual_per_delivered",
)


def to_json(rows: Sequence[CostRow]) -> str:
    """The rows as a JSON array."""
    return json.dumps([r.as_dict() for r in rows], indent=2)


def to_csv(rows: Sequence[CostRow]) -> str:
    """The rows as CSV with a header row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.as_dict().items()})
    return out.getvalue()


def to_table(rows: Sequence[CostRow]) -> str:
    """The rows as an aligned text table."""
    cells = [[_cell(r.as_dict()[c]) for c in COLUMNS] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)
