"""Fixtures of the API tests: a migrated store and an app on an in-memory publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smsrelay.store import SqlStore
from tests.api.support import Api, MemoryPublisher, api_settings, running_api


@pytest.fixture
async def api(store: SqlStore, sqlite_url: str) -> AsyncIterator[Api]:
    """The app on ``store`` with a ``MemoryPublisher``."""
    async with running_api(api_settings(sqlite_url), store, MemoryPublisher()) as running:
        yield running
