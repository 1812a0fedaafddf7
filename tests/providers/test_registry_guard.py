"""Every provider in the registry keeps the shared provider contract."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from smsrelay.providers import REGISTRY
from tests.providers.contract import CONTRACTS


def _import_provider_tests() -> None:
    # Subclasses register on import; import them all so this test also holds when run alone.
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("test_"):
            importlib.import_module(f"{__package__}.{module.name}")


def test_every_registered_provider_has_a_contract_test() -> None:
    """A type name in REGISTRY without a ProviderContractTest subclass fails the suite."""
    _import_provider_tests()
    missing = sorted(set(REGISTRY) - set(CONTRACTS))
    assert not missing, f"no ProviderContractTest subclass declares provider_type {missing}"


def test_every_contract_test_names_a_registered_provider() -> None:
    """A contract test for a type REGISTRY does not know is a typo or a missing registry line."""
    _import_provider_tests()
    unknown = sorted(set(CONTRACTS) - set(REGISTRY))
    assert not unknown, f"contract tests for unregistered provider types {unknown}"
