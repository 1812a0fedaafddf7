"""Price tables: CSV and config forms, hostile input, longest-prefix lookup, staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from smsrelay.economics import prices as prices_module
from smsrelay.economics.prices import (
    Price,
    PriceError,
    PriceSettings,
    PriceTable,
    StalePrices,
    parse_csv,
    stale,
)
from smsrelay.errors import ConfigError
from smsrelay.settings import load

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HEADER = "provider,destination,price,currency,effective_from\n"


def _csv(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(row + "\n" for row in rows)).encode()


def test_csv_rows_become_prices() -> None:
    """Each row is a provider's price per part for a country or prefix, from its date."""
    rows = parse_csv(_csv("tw,GB,0.0400,USD,2026-01-01", "tw,+4420,0.05,GBP,2026-02-01T10:00:00+01:00"))
    assert rows == [
        Price("tw", "GB", Decimal("0.0400"), "USD", datetime(2026, 1, 1, tzinfo=UTC)),
        Price("tw", "+4420", Decimal("0.05"), "GBP", datetime(2026, 2, 1, 9, tzinfo=UTC)),
    ]


def test_effective_from_is_optional() -> None:
    """Without the column (or with it empty) a price takes effect at import time."""
    rows = parse_csv(_csv("tw,US,0.0079,USD", header="provider,destination,price,currency\n"), now=NOW)
    assert rows[0].effective_from == NOW
    assert parse_csv(_csv("tw,US,0.0079,USD,"), now=NOW)[0].effective_from == NOW


def test_bom_and_crlf_are_accepted() -> None:
    """A file saved by a spreadsheet (UTF-8 BOM, CRLF line ends) reads the same."""
    data = b"\xef\xbb\xbf" + _csv("tw,US,0.0079,USD,2026-01-01").replace(b"\n", b"\r\n")
    assert parse_csv(data)[0].destination == "US"


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (["tw,XX,0.01,USD,"], "line 2: destination 'XX' is neither a country"),
        (["tw,gb,0.01,USD,"], "line 2: destination 'gb'"),
        (["tw,+44a,0.01,USD,"], "line 2: destination '+44a'"),
        (["tw,GB,-1,USD,"], "line 2: price '-1' is not a decimal"),
        (["tw,GB,NaN,USD,"], "line 2: price 'NaN'"),
        (["tw,GB,1e3,USD,"], "line 2: price '1e3'"),
        (["tw,GB,0.01,usd,"], "line 2: currency 'usd'"),
        (["tw,GB,0.01,USD,yesterday"], "line 2: effective_from 'yesterday' is not a date"),
        (["tw,GB,0.01,USD,2026-01-01T00:00:00"], "line 2: effective_from needs an offset"),
        (["tw,GB,0.01"], "line 2: 3 fields, the header has 5"),
        (["tw,US,0.01,USD,", "tw,GB,0.01,USD,2026-01-01", "tw,GB,0.02,USD,2026-01-01"], "line 4: same provider, destination, date as line 3"),
        (["tw,GB,0.01,USD,", "other,GB,0.01,USD,"], "line 3: provider 'other' is not 'tw'"),
        (['tw,GB,"0.01,USD,'], "line 2: unexpected end of data"),
        (["tw bad,GB,0.01,USD,"], "line 2: provider 'tw bad' is not a provider name"),
    ],
)
def test_bad_rows_are_refused_naming_the_line(rows: list[str], problem: str) -> None:
    """Every malformed row is refused with its line number and what is wrong."""
    with pytest.raises(PriceError) as caught:
        parse_csv(_csv(*rows), provider="tw")
    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "line 1: the file is empty"),
        (b"provider,destination,cost\n", "line 1: header must be"),
        (b"\xff\xfeprovider", "file is not UTF-8 (byte 0)"),
        (HEADER.encode() + b"tw,GB,0.01,USD,\0\n", "file contains a NUL byte"),
        (HEADER.encode() + b'tw,"' + b"x" * 200_000 + b'",0.01,USD,\n', "line 2: field larger than field limit"),
    ],
)
def test_bad_files_are_refused(data: bytes, problem: str) -> None:
    """An empty, headerless, non-UTF-8, binary or oversized-field file is refused plainly."""
    with pytest.raises(PriceError) as caught:
        parse_csv(data)
    assert str(caught.value).startswith(problem)


def test_file_over_the_size_limit_is_refused_before_parsing() -> None:
    """A file over 8 MiB is refused by its size alone."""
    with pytest.raises(PriceError, match="the limit is 8388608"):
        parse_csv(b"x" * (8 * 1024 * 1024 + 1))


def test_rows_over_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """More rows than MAX_CSV_ROWS is refused at the first row over."""
    monkeypatch.setattr(prices_module, "MAX_CSV_ROWS", 2)
    rows = [f"tw,+{n},0.01,USD," for n in range(1, 4)]
    with pytest.raises(PriceError, match="line 4: more than 2 rows"):
        parse_csv(_csv(*rows))


def test_worst_case_file_parses_in_one_pass() -> None:
    """100 000 rows (the limit) parse, each checked."""
    rows = [f"tw,+{n},0.01,USD,2026-01-01" for n in range(100_000)]
    assert len(parse_csv(_csv(*rows))) == 100_000


def _price(dest: str, amount: str, when: datetime = NOW - timedelta(days=10), provider: str = "tw") -> Price:
    return Price(provider, dest, Decimal(amount), "USD", when)


def test_longest_prefix_wins_then_country() -> None:
    """+447911… takes the +4479 price over +44 and the country; another number takes its country's."""
    table = PriceTable([_price("GB", "0.04"), _price("+44", "0.05"), _price("+4479", "0.03")], NOW)
    assert table.lookup("tw", "+447911123456", "GB").price == Decimal("0.03")
    assert table.lookup("tw", "+442071234567", "GB").price == Decimal("0.05")
    assert table.lookup("tw", "+14155550123", "GB").price == Decimal("0.04")


def test_missing_price_is_none() -> None:
    """A destination without a price for a provider has none: it is not a cost candidate."""
    table = PriceTable([_price("GB", "0.04")], NOW)
    assert table.lookup("tw", "+14155550123", "US") is None
    assert table.lookup("other", "+447911123456", "GB") is None


def test_history_answers_for_any_moment() -> None:
    """The price in effect at a moment is the latest that took effect by then; future ones wait."""
    rows = [
        _price("GB", "0.040", NOW - timedelta(days=300)),
        _price("GB", "0.042", NOW - timedelta(days=30)),
        _price("GB", "0.050", NOW + timedelta(days=30)),
    ]
    assert PriceTable(rows, NOW).lookup("tw", "+44", "GB").price == Decimal("0.042")
    assert PriceTable(rows, NOW - timedelta(days=100)).lookup("tw", "+44", "GB").price == Decimal("0.040")
    assert PriceTable(rows, NOW - timedelta(days=400)).lookup("tw", "+44", "GB") is None


def test_only_current_old_prices_are_stale() -> None:
    """A price in effect for longer than max_age is stale; a superseded old one is not counted."""
    rows = [
        _price("GB", "0.040", NOW - timedelta(days=300)),
        _price("GB", "0.042", NOW - timedelta(days=30)),
        _price("US", "0.008", NOW - timedelta(days=200)),
    ]
    assert [p.destination for p in stale(rows, timedelta(days=180), NOW)] == ["US"]


def test_stale_gauge_and_warning_per_provider(capsys: pytest.CaptureFixture[str]) -> None:
    """smsrelay_stale_prices counts stale prices per provider (0 for fresh ones)."""
    registry = CollectorRegistry()
    rows = [_price("US", "0.008", NOW - timedelta(days=200)), _price("GB", "0.04", provider="fresh")]
    counts = StalePrices(registry).update(rows, timedelta(days=180), NOW)
    assert counts == {"fresh": 0, "tw": 1}
    assert registry.get_sample_value("smsrelay_stale_prices", {"provider": "tw"}) == 1
    assert registry.get_sample_value("smsrelay_stale_prices", {"provider": "fresh"}) == 0


def test_config_form_builds_the_same_prices() -> None:
    """prices.providers.<name> (currency, effective_from, destinations) gives checked prices."""
    settings = PriceSettings.model_validate(
        {"providers": {"tw": {"currency": "USD", "effective_from": "2026-01-01",
                              "destinations": {"US": 0.0079, "+4420": "0.05"}}}}
    )
    assert settings.table() == [
        Price("tw", "US", Decimal("0.0079"), "USD", datetime(2026, 1, 1, tzinfo=UTC)),
        Price("tw", "+4420", Decimal("0.05"), "USD", datetime(2026, 1, 1, tzinfo=UTC)),
    ]


def test_bad_config_price_refuses_start_naming_the_key() -> None:
    """A bad destination in the config is a ConfigError naming prices.providers.<name>.<dest>."""
    with pytest.raises(ConfigError, match=r"prices\.providers\.tw\.ZZ: destination 'ZZ'"):
        load(prices={"providers": {"tw": {"currency": "USD", "destinations": {"ZZ": 1}}}})


def test_default_settings_have_no_prices_and_180_days() -> None:
    """Without a prices key nothing changes: no tables, stale after 180 days."""
    settings = load()
    assert settings.prices.providers == {} and settings.prices.max_age == timedelta(days=180)
