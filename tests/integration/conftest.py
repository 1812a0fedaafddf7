"""Integration fixtures beyond tests/conftest.py: a private broker node to restart."""

from __future__ import annotations

from tests.private_broker import private_broker  # noqa: F401 - a fixture
