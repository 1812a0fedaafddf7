"""`smsrelay --version`, `config check`, `config show`, the reference, comma lists in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smsrelay import config_doc
from smsrelay import settings as config

ROOT = Path(__file__).resolve().parents[2]
TWILIO = {
    "type": "twilio",
    "account_sid": "AC" + "0" * 32,
    "auth_token": "tw-secret-token",
    "sender": "+14155550100",
}


def smsrelay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, with SMSRELAY_* variables only from ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMSRELAY_")}
    return subprocess.run(
        [sys.executable, "-m", "smsrelay", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, data: object) -> str:
    """A YAML config file holding ``data``."""
    path = tmp_path / "smsrelay.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_version_prints_the_package_version() -> None:
    """`smsrelay --version` prints the installed version and exits 0."""
    done = smsrelay("--version")
    assert done.returncode == 0 and done.stdout.startswith("smsrelay 0.")


def test_config_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    """One run of `config check` lists all problems (file, provider, route, environment), exit 2."""
    path = write(
        tmp_path,
        {
            "prefetch": 0,
            "providers": {"tw": {"type": "twilio"}, "x": {"type": "nope"}},
            "routes": {"GB": ["tw", "ghost"]},
        },
    )
    done = smsrelay(
        "config",
        "check",
        "--config",
        path,
        env={"SMSRELAY_GRACE_PERIOD": "-1", "SMSRELAY_DATABASE_URL": "postgresql://h/db"},
    )
    assert done.returncode == 2
    for expected in (
        "config prefetch:",
        "config grace_period:",
        "config providers.tw.account_sid: Field required",
        "config providers.tw.auth_token: Field required",
        "config providers.x.type: unknown provider type 'nope'",
        'config routes: needs a "*" default route',
        "config routes.GB: unknown provider 'ghost'",
        "use postgresql+asyncpg://",
    ):
        assert expected in done.stderr, done.stderr
    assert "8 problem(s)" in done.stderr


def test_config_check_passes_a_good_file(tmp_path: Path) -> None:
    """A usable configuration passes with exit 0 (warnings allowed)."""
    path = write(tmp_path, {"providers": {"tw": TWILIO}, "routes": {"*": ["tw"]}})
    done = smsrelay("config", "check", "--config", path, env={"SMSRELAY_API_KEYS": "a,b"})
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout


def test_config_check_warns_of_a_country_route_that_misses_its_calling_code(
    tmp_path: Path,
) -> None:
    """A GB route leaves Guernsey, Jersey and the Isle of Man (+44 too) to `*`: check says so, exit 0."""
    providers = {"tw": TWILIO, "sim": {"type": "simulator"}}
    path = write(tmp_path, {"providers": providers, "routes": {"GB": ["tw"], "*": ["sim"]}})
    done = smsrelay("config", "check", "--config", path, env={"SMSRELAY_API_KEYS": "a"})
    assert done.returncode == 0, done.stderr
    assert "GG" in done.stdout + done.stderr and "+44" in done.stdout + done.stderr


def test_config_show_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    """`config show` merges file and environment and never prints a password, token or key."""
    path = write(tmp_path, {"providers": {"tw": TWILIO}, "routes": {"*": ["tw"]}})
    done = smsrelay(
        "config",
        "show",
        "--config",
        path,
        env={
            "SMSRELAY_API_KEYS": "key-one,key-two",
            "SMSRELAY_AMQP_URL": "amqp://sms:amqp-pw@rabbit:5672/prod",
            "SMSRELAY_RETRY__MAX_ATTEMPTS": "3",
        },
    )
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert shown["retry"]["max_attempts"] == 3
    assert shown["amqp_url"] == "amqp://sms:***@rabbit:5672/prod"
    assert shown["api_keys"] == ["***", "***"]
    assert shown["providers"]["tw"]["account_sid"] == TWILIO["account_sid"]
    for secret in ("tw-secret-token", "amqp-pw", "key-one"):
        assert secret not in done.stdout


def test_comma_separated_list_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMSRELAY_API_KEYS=abc,def and SMSRELAY_RETRY__DELAYS=1,2.5 load as lists; JSON still works."""
    monkeypatch.setenv("SMSRELAY_API_KEYS", "abc, def")
    monkeypatch.setenv("SMSRELAY_RETRY__DELAYS", "1,2.5")
    settings = config.load()
    assert settings.api_keys == ["abc", "def"] and settings.retry.delays == [1.0, 2.5]
    monkeypatch.setenv("SMSRELAY_API_KEYS", json.dumps(["a,b"]))
    assert config.load().api_keys == ["a,b"]
    monkeypatch.setenv("SMSRELAY_API_KEYS", "single")
    assert config.load().api_keys == ["single"]


def test_every_setting_is_documented() -> None:
    """Each key of the settings models has a description in config_doc (so in the reference)."""
    assert config_doc.undocumented() == []


def test_configuration_reference_is_up_to_date() -> None:
    """docs/configuration.md is what `smsrelay config reference` generates (regenerate it if not)."""
    assert (ROOT / "docs" / "configuration.md").read_text() == config_doc.render(), (
        "run: smsrelay config reference > docs/configuration.md"
    )
