"""Price tables: what one SMS part costs at each provider, per destination, over time.

A price row is ``provider, destination, price, currency, effective_from``. The
destination is an ISO 3166-1 alpha-2 country (``GB``) or an E.164 prefix (``+4420``);
for a number, the longest matching prefix wins, then its country. Rows are never
overwritten by a newer price: each has the date it took effect, so a cost report can
tell what a message cost when it was sent.

Prices come from a CSV file (``smsrelay prices import``) or the YAML config
(``prices.providers``). Both are hostile input: the CSV is bounded in size and rows,
parsed in one pass, and every error names its line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import phonenumbers
import structlog
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CSV_HEADER",
    "MAX_CSV_BYTES",
    "MAX_CSV_ROWS",
    "Price",
    "PriceError",
    "PriceSettings",
    "PriceTable",
    "StalePrices",
    "parse_csv",
    "stale",
]

MAX_CSV_BYTES = 8 * 1024 * 1024
MAX_CSV_ROWS = 100_000
CSV_HEADER = ("provider", "destination", "price", "currency", "effective_from")
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PROVIDER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PRICE = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,8})?$")
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


class PriceError(ValueError):
    """A price row or file that cannot be used; the message names the line or key."""


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one part sent by ``provider`` to ``destination`` from ``effective_from``."""

    provider: str
    destination: str
    price: Decimal
    currency: str
    effective_from: datetime

    @property
    def is_prefix(self) -> bool:
        """True for an E.164 prefix, False for a country."""
        return self.destination.startswith("+")


def check_destination(value: str) -> str:
    """``value`` as a destination key, or ``PriceError``: a known country or ``+digits``."""
    if _PREFIX.match(value):
        return value
    if _COUNTRY.match(value) and value in _REGIONS:
        return value
    raise PriceError(f"destination {value[:20]!r} is neither a country (GB) nor a prefix (+4420)")


def check_price(value: str) -> Decimal:
    """A non-negative decimal with at most 12 integer and 8 fractional digits."""
    if not _PRICE.match(value):
        raise PriceError(f"price {value[:20]!r} is not a decimal like 0.0075")
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise PriceError(f"price {value[:20]!r} is not a decimal like 0.0075") from None


def check_effective(value: str | date | datetime | None, default: datetime) -> datetime:
    """A date (midnight UTC) or a date-time with an offset; absent: ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        value = _parse_when(value)
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        raise PriceError("effective_from needs an offset (2026-01-31T00:00:00Z) or a plain date")
    return value.astimezone(UTC)


def _parse_when(text: str) -> date | datetime:
    try:
        return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)
    except ValueError:
        raise PriceError(f"effective_from {text[:32]!r} is not a date (2026-01-31)") from None


def make_price(
    provider: str,
    destination: str,
    price: str,
    currency: str,
    effective_from: str | date | None,
    now: datetime,
) -> Price:
    """A checked ``Price`` from text fields, or ``PriceError`` naming the bad field."""
    if not _PROVIDER.match(provider):
        raise PriceError(f"provider {provider[:20]!r} is not a provider name")
    if not _CURRENCY.match(currency):
        raise PriceError(f"currency {currency[:20]!r} is not an ISO 4217 code like USD")
    return Price(
        provider,
        check_destination(destination),
        check_price(price),
        currency,
        check_effective(effective_from, now),
    )


def parse_csv(
    data: bytes, *, provider: str | None = None, now: datetime | None = None
) -> list[Price]:
    """Read ``provider,destination,price,currency[,effective_from]`` with a header row.

    With ``provider``, every row must be that provider's. Raises ``PriceError`` naming
    the line for anything wrong; nothing is returned from a file with an error.
    """
    now = now or datetime.now(UTC)
    if len(data) > MAX_CSV_BYTES:
        raise PriceError(f"file is {len(data)} bytes, the limit is {MAX_CSV_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceError(f"file is not UTF-8 (byte {exc.start})") from None
    if "\0" in text:
        raise PriceError("file contains a NUL byte: not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return list(_prices(reader, provider, now))
    except csv.Error as exc:
        raise PriceError(f"line {reader.line_num}: {exc}") from None


def _prices(reader: Iterator[list[str]], only: str | None, now: datetime) -> Iterator[Price]:
    width = _header(reader)
    seen: dict[tuple[str, str, datetime], int] = {}
    for count, fields in enumerate(reader, start=1):
        line = count + 1
        if count > MAX_CSV_ROWS:
            raise PriceError(f"line {line}: more than {MAX_CSV_ROWS} rows")
        if not fields:
            continue
        price = _row(fields, width, line, now)
        if only is not None and price.provider != only:
            raise PriceError(f"line {line}: provider {price.provider!r} is not {only!r}")
        key = (price.provider, price.destination, price.effective_from)
        if key in seen:
            raise PriceError(f"line {line}: same provider, destination, date as line {seen[key]}")
        seen[key] = line
        yield price


def _header(reader: Iterator[list[str]]) -> int:
    first = next(reader, None)
    if first is None:
        raise PriceError("line 1: the file is empty; it needs a header row")
    names = tuple(name.strip().lower() for name in first)
    if names not in (CSV_HEADER[:4], CSV_HEADER):
        raise PriceError(f"line 1: header must be {','.join(CSV_HEADER)} (the last is optional)")
    return len(names)


def _row(fields: list[str], width: int, line: int, now: datetime) -> Price:
    if len(fields) != width:
        raise PriceError(f"line {line}: {len(fields)} fields, the header has {width}")
    provider, destination, price, currency, *rest = (field.strip() for field in fields)
    try:
        return make_price(provider, destination, price, currency, rest[0] if rest else None, now)
    except PriceError as exc:
        raise PriceError(f"line {line}: {exc}") from None


class ProviderPrices(BaseModel):
    """One provider's prices in the YAML config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str
    effective_from: date | None = None
    # destination → price per part, as a string or a number ("0.0075" keeps every digit).
    destinations: dict[str, str | float] = Field(default_factory=dict)


class PriceSettings(BaseModel):
    """``prices``: the config form of the tables and how old a price may get."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age_days: int = Field(default=180, ge=1)
    providers: dict[str, ProviderPrices] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> PriceSettings:
        try:
            self.table()
        except PriceError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def max_age(self) -> timedelta:
        """How old a price may be before it is flagged stale."""
        return timedelta(days=self.max_age_days)

    def table(self, now: datetime | None = None) -> list[Price]:
        """The configured prices, checked; ``PriceError`` names the key."""
        now = now or datetime.now(UTC)
        out = []
        for provider, conf in self.providers.items():
            for destination, value in conf.destinations.items():
                try:
                    price = make_price(
                        provider, destination, str(value), conf.currency, conf.effective_from, now
                    )
                    out.append(price)
                except PriceError as exc:
                    raise PriceError(f"prices.providers.{provider}.{destination}: {exc}") from None
        return out


class PriceTable:
    """Prices in effect at one moment, answering "what does a part cost via X to N?"."""

    def __init__(self, prices: Iterable[Price], at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        current: dict[tuple[str, str], Price] = {}
        for price in prices:
            key = (price.provider, price.destination)
            if price.effective_from <= at and (
                key not in current or price.effective_from > current[key].effective_from
            ):
                current[key] = price
        self.prices = current

    def lookup(self, provider: str, number: str, country: str) -> Price | None:
        """The price for ``number`` (E.164) in ``country``: longest prefix, then country."""
        for length in range(min(len(number), 16), 1, -1):
            found = self.prices.get((provider, number[:length]))
            if found is not None:
                return found
        return self.prices.get((provider, country))


def stale(prices: Iterable[Price], max_age: timedelta, now: datetime | None = None) -> list[Price]:
    """The prices in effect now that took effect more than ``max_age`` ago."""
    now = now or datetime.now(UTC)
    return [p for p in PriceTable(prices, now).prices.values() if now - p.effective_from > max_age]


class StalePrices:
    """The ``smsrelay_stale_prices`` gauge (per provider) and a warning for each stale table."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "smsrelay_stale_prices",
            "Prices in effect that took effect longer ago than prices.max_age_days",
            ["provider"],
            registry=registry,
        )
        self.log = structlog.get_logger("smsrelay.prices")

    def update(
        self, prices: Iterable[Price], max_age: timedelta, now: datetime | None = None
    ) -> dict[str, int]:
        """Set the gauge from ``prices``, warn per provider with stale ones; the counts."""
        rows = list(prices)
        counts = dict.fromkeys(sorted({p.provider for p in rows}), 0)
        for price in stale(rows, max_age, now):
            counts[price.provider] += 1
        for provider, count in counts.items():
            self.gauge.labels(provider).set(count)
            if count:
                self.log.warning(
                    "prices_stale", provider=provider, stale=count, max_age_days=max_age.days
                )
        return counts
