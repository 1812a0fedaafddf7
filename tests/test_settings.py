"""Settings: defaults, a YAML file, SMSRELAY_* overrides, and errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smsrelay import settings
from smsrelay.errors import ConfigError
from smsrelay.providers.simulator import SimulatorSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SMSRELAY_* variable of the machine leaks into these tests."""
    for key in list(os.environ):
        if key.startswith("SMSRELAY_"):
            monkeypatch.delenv(key)


def config_file(tmp_path: Path, text: str) -> Path:
    """A YAML config file holding ``text``."""
    path = tmp_path / "smsrelay.yaml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError loading ``text`` raises."""
    with pytest.raises(ConfigError) as caught:
        settings.load(config_file(tmp_path, text))
    return caught.value


SIM_FILE = """\
prefetch: 10
retry: {max_attempts: 3, delays: [1.0]}
providers:
  sim: {type: simulator, latency_ms: 5}
routes:
  "*": [sim]
"""


def test_defaults_load_without_a_file() -> None:
    """With no file and no environment, the built-in defaults validate."""
    loaded = settings.load()
    assert loaded.prefetch == 300
    assert loaded.routes == {"*": ["simulator"]}
    assert loaded.retry == settings.RetrySettings()
    assert isinstance(loaded.provider_settings()["simulator"], SimulatorSettings)


def test_yaml_file_is_read_from_a_path(tmp_path: Path) -> None:
    """Keys in the file given as a path are applied."""
    loaded = settings.load(config_file(tmp_path, SIM_FILE))
    assert loaded.prefetch == 10
    assert loaded.retry.max_attempts == 3
    assert loaded.routes == {"*": ["sim"]}
    sim = loaded.provider_settings()["sim"]
    assert isinstance(sim, SimulatorSettings)
    assert sim.latency_ms == 5


def test_yaml_file_is_found_through_smsrelay_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a path argument, SMSRELAY_CONFIG names the file."""
    monkeypatch.setenv("SMSRELAY_CONFIG", str(config_file(tmp_path, SIM_FILE)))
    assert settings.load().prefetch == 10


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    """An empty file is an empty mapping."""
    assert settings.load(config_file(tmp_path, "")).prefetch == 300


def test_environment_variable_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMSRELAY_PREFETCH beats ``prefetch`` in the file; other file keys still apply."""
    monkeypatch.setenv("SMSRELAY_PREFETCH", "42")
    loaded = settings.load(config_file(tmp_path, SIM_FILE))
    assert loaded.prefetch == 42
    assert loaded.routes == {"*": ["sim"]}


def test_nested_environment_variable_overrides_only_its_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMSRELAY_RETRY__JITTER changes jitter and keeps the file's other retry keys."""
    monkeypatch.setenv("SMSRELAY_RETRY__JITTER", "0")
    loaded = settings.load(config_file(tmp_path, SIM_FILE))
    assert loaded.retry.jitter == 0
    assert loaded.retry.max_attempts == 3


def test_provider_secret_from_environment_keeps_the_file_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overriding one provider key from the environment keeps that provider's file keys."""
    monkeypatch.setenv("SMSRELAY_PROVIDERS__SIM__LATENCY_MS", "7")
    loaded = settings.load(config_file(tmp_path, SIM_FILE))
    sim = loaded.provider_settings()["sim"]
    assert isinstance(sim, SimulatorSettings)
    assert sim.latency_ms == 7


def test_keyword_override_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit override passed to load() wins over SMSRELAY_* variables."""
    monkeypatch.setenv("SMSRELAY_PREFETCH", "42")
    assert settings.load(prefetch=7).prefetch == 7


def test_unknown_provider_type_names_its_key(tmp_path: Path) -> None:
    """A provider of an unregistered type is refused at ``providers.<name>.type``."""
    error = config_error(tmp_path, 'providers:\n  x: {type: nope}\nroutes:\n  "*": [x]\n')
    assert error.key == "providers.x.type"
    assert "nope" in error.problem


def test_missing_twilio_account_sid_names_its_key(tmp_path: Path) -> None:
    """A provider's own settings model names the missing key under the provider."""
    error = config_error(
        tmp_path, 'providers:\n  tw: {type: twilio, auth_token: t}\nroutes:\n  "*": [tw]\n'
    )
    assert error.key == "providers.tw.account_sid"


def test_provider_named_after_its_type_needs_no_type_key(tmp_path: Path) -> None:
    """A provider called ``simulator`` is of type simulator unless it says otherwise."""
    loaded = settings.load(config_file(tmp_path, "providers:\n  simulator: {}\n"))
    assert loaded.provider_settings()["simulator"].type == "simulator"


def test_unknown_provider_setting_names_its_key(tmp_path: Path) -> None:
    """A misspelt provider key is refused under the provider's name."""
    error = config_error(tmp_path, "providers:\n  simulator: {latency: 5}\n")
    assert error.key == "providers.simulator.latency"


def test_route_naming_an_unknown_provider_is_refused(tmp_path: Path) -> None:
    """A route to a provider that is not configured stops start-up, naming route and name."""
    error = config_error(tmp_path, 'routes:\n  "*": [simulator]\n  GB: [ghost]\n')
    assert "routes.GB" in str(error)
    assert "ghost" in str(error)


def test_route_naming_an_unknown_provider_has_the_route_as_key(tmp_path: Path) -> None:
    """ConfigError.key is the offending route, ``routes.GB``."""
    error = config_error(tmp_path, 'routes:\n  "*": [simulator]\n  GB: [ghost]\n')
    assert error.key == "routes.GB"


def test_route_table_without_default_is_refused(tmp_path: Path) -> None:
    """A table with no ``*`` route would leave some numbers unroutable."""
    error = config_error(tmp_path, "routes:\n  GB: [simulator]\n")
    assert "routes" in str(error)
    assert '"*"' in error.problem


def test_broken_yaml_is_reported_against_smsrelay_config(tmp_path: Path) -> None:
    """A file that is not YAML names SMSRELAY_CONFIG and the file."""
    error = config_error(tmp_path, "prefetch: [1,\n")
    assert error.key == "SMSRELAY_CONFIG"
    assert "not valid YAML" in error.problem


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    """The top level of the file must be a mapping."""
    error = config_error(tmp_path, text)
    assert error.key == "SMSRELAY_CONFIG"
    assert "mapping" in error.problem


def test_missing_file_is_reported_against_smsrelay_config(tmp_path: Path) -> None:
    """A path that does not exist is refused, naming the file."""
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        settings.load(missing)
    assert caught.value.key == "SMSRELAY_CONFIG"
    assert str(missing) in caught.value.problem


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    """A misspelt top-level key is an error, not silently ignored."""
    assert config_error(tmp_path, "prefech: 10\n").key == "prefech"


def test_out_of_range_value_names_its_key(tmp_path: Path) -> None:
    """Validation errors of nested settings name the dotted key."""
    assert config_error(tmp_path, "retry: {max_attempts: 0}\n").key == "retry.max_attempts"
    assert config_error(tmp_path, "prefetch: 0\n").key == "prefetch"


def test_stray_smsrelay_variable_is_ignored_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMSRELAY_* variable that names no setting (a tool's, a typo) does not stop start-up."""
    monkeypatch.setenv("SMSRELAY_OTHER_TOOL_DIR", "/somewhere")
    monkeypatch.setenv("SMSRELAY_RETRY__MAX_ATTEMPT", "9")
    monkeypatch.setenv("SMSRELAY_PREFETCH", "42")
    loaded = settings.load()
    assert loaded.prefetch == 42
    assert loaded.retry.max_attempts == settings.RetrySettings().max_attempts


def test_unknown_variables_names_each_stray_one() -> None:
    """unknown_variables lists the SMSRELAY_* names load() ignores, and no declared one."""
    environ = {
        "SMSRELAY_OTHER_TOOL_DIR": "x",
        "SMSRELAY_RETRY__MAX_ATTEMPT": "9",
        "SMSRELAY_PREFETCH__X": "1",
        "SMSRELAY_CONFIG": "smsrelay.yaml",
        "SMSRELAY_PREFETCH": "1",
        "SMSRELAY_RETRY": '{"jitter": 0}',
        "SMSRELAY_RETRY__JITTER": "0",
        "SMSRELAY_PROVIDERS__SIM__LATENCY_MS": "7",
        "SMSRELAY_ROUTES": '{"*": ["simulator"]}',
        "OTHER_PREFETCH": "1",
    }
    assert settings.unknown_variables(environ) == [
        "SMSRELAY_OTHER_TOOL_DIR",
        "SMSRELAY_PREFETCH__X",
        "SMSRELAY_RETRY__MAX_ATTEMPT",
    ]


def test_country_route_from_the_environment_keeps_its_upper_case_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMSRELAY_ROUTES__GB sets the ``GB`` route (a lower-case ``gb`` would never match)."""
    monkeypatch.setenv("SMSRELAY_ROUTES__GB", '["sim"]')
    loaded = settings.load(config_file(tmp_path, SIM_FILE))
    assert loaded.routes == {"*": ["sim"], "GB": ["sim"]}
