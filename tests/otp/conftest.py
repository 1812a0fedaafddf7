"""Fixtures of the OTP tests: an API whose verifications have a key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from smsrelay.store import SqlStore
from tests.api.support import Api, MemoryPublisher, api_settings, running_api

VERIFICATION_KEY = "verification-key-for-tests"


def otp_settings(database_url: str, **verification: Any) -> Any:
    """API settings with a verification key and the given verification rules."""
    return api_settings(database_url, verification={"key": VERIFICATION_KEY, **verification})


@pytest.fixture
async def api(store: SqlStore, sqlite_url: str) -> AsyncIterator[Api]:
    """The app with verifications configured, on ``store`` and a ``MemoryPublisher``."""
    async with running_api(otp_settings(sqlite_url), store, MemoryPublisher()) as running:
        yield running
