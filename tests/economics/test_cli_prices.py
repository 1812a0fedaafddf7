"""`smsrelay prices import | sync | list` against a SQLite store of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Done:
    """What a command did: exit code and its stdout and stderr together."""

    exit_code: int
    output: str


def smsrelay(*args: str) -> Done:
    """Run the real command line in a subprocess (it configures logging for its process)."""
    done = subprocess.run(
        [sys.executable, "-m", "smsrelay", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("SMSRELAY_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Done(done.returncode, done.stdout + done.stderr)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config with one provider `tw`, a config-form price table and 90-day staleness."""
    path = tmp_path / "smsrelay.yaml"
    path.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path}/s.db\n"
        "providers: {tw: {type: simulator}}\n"
        'routes: {"*": [tw]}\n'
        "prices:\n"
        "  max_age_days: 90\n"
        "  providers:\n"
        "    tw: {currency: USD, effective_from: 2020-01-01, destinations: {US: '0.0079'}}\n"
    )
    return path


def _csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text("provider,destination,price,currency,effective_from\n" + "".join(r + "\n" for r in rows))
    return path


def test_import_then_list_shows_current_prices(tmp_path: Path, config: Path) -> None:
    """An imported CSV is listed: the current GB price, the superseded one only with --history."""
    csv = _csv(tmp_path, "tw,GB,0.0400,USD,2026-01-01", "tw,GB,0.0420,USD,2026-11-01")
    done = smsrelay("prices", "import", str(csv), "--provider", "tw", "-c", str(config))
    assert done.exit_code == 0, done.output
    assert "tw: 2 prices read, 2 added, 0 changed, 0 unchanged" in done.output
    listed = smsrelay("prices", "list", "-c", str(config))
    assert "0.0420" in listed.output and "0.0400" not in listed.output
    history = smsrelay("prices", "list", "--history", "-c", str(config))
    assert "superseded" in history.output and "0.0400" in history.output


def test_bad_csv_fails_naming_the_line_and_imports_nothing(tmp_path: Path, config: Path) -> None:
    """A file with one bad row exits 2 naming the file and line; no row of it is stored."""
    csv = _csv(tmp_path, "tw,GB,0.04,USD,2026-01-01", "tw,GB,abc,USD,2026-02-01")
    done = smsrelay("prices", "import", str(csv), "--provider", "tw", "-c", str(config))
    assert done.exit_code == 2
    assert "line 3: price 'abc' is not a decimal" in done.output
    listed = smsrelay("prices", "list", "-c", str(config))
    assert "GB" not in listed.output


def test_unknown_provider_is_refused(tmp_path: Path, config: Path) -> None:
    """--provider must name a configured provider."""
    csv = _csv(tmp_path, "nope,GB,0.04,USD,2026-01-01")
    done = smsrelay("prices", "import", str(csv), "--provider", "nope", "-c", str(config))
    assert done.exit_code == 2 and "no provider named 'nope'" in done.output


def test_sync_stores_config_prices_and_warns_when_stale(config: Path) -> None:
    """`prices sync` stores the config's table; a price older than max_age_days is flagged stale."""
    done = smsrelay("prices", "sync", "-c", str(config))
    assert done.exit_code == 0, done.output
    assert "1 prices from the config, 1 added" in done.output
    assert "warning: 1 of these prices took effect more than 90 days ago" in done.output
    listed = smsrelay("prices", "list", "-c", str(config))
    assert "US" in listed.output and "stale" in listed.output
