"""The vendored provider descriptions: each one the tests read is in the repository, as sourced."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tests.providers.contract import CONTRACTS, SPECS_DIR
from tests.providers.test_registry_guard import _import_provider_tests

ROW = re.compile(r"^\| `(?P<file>[^`]+)` .*\| `(?P<sha>[0-9a-f]{64})` \|$", re.MULTILINE)


def sources() -> dict[str, str]:
    """File → SHA-256, as ``SOURCES.md`` lists them."""
    text = (SPECS_DIR / "SOURCES.md").read_text(encoding="utf-8")
    return {m["file"]: m["sha"] for m in ROW.finditer(text)}


def vendored() -> set[str]:
    """Every description file under the specs directory, relative to it."""
    return {
        p.relative_to(SPECS_DIR).as_posix()
        for p in SPECS_DIR.rglob("*")
        if p.is_file() and p.name != "SOURCES.md"
    }


def test_specs_live_inside_the_repository() -> None:
    """The specs directory is part of the checkout, not a path beside it."""
    repo = Path(__file__).resolve().parents[2]
    assert SPECS_DIR.resolve().is_relative_to(repo)


def test_every_vendored_file_is_sourced_and_unchanged() -> None:
    """Each vendored file has a SOURCES.md row whose SHA-256 matches its bytes, and vice versa."""
    listed = sources()
    assert set(listed) == vendored()
    for name, sha in listed.items():
        assert hashlib.sha256((SPECS_DIR / name).read_bytes()).hexdigest() == sha, name


def test_every_contract_spec_is_vendored() -> None:
    """Each provider contract's spec is a vendored file, and no vendored file is unused."""
    _import_provider_tests()
    used = {c.spec for classes in CONTRACTS.values() for c in classes if c.spec is not None}
    assert used == vendored()
