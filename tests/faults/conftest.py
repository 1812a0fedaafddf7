"""Fault-injection scenarios: real worker processes, a private broker, a misbehaving provider.

Every module here is marked ``faults`` (select with ``-m faults``). By default each runs
its short form, a few hundred messages, so the suite fits in CI; ``TEST_FAULTS_SCALE``
(e.g. 10) multiplies the load for a long run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.fakes.faulty import FaultyTwilio
from tests.private_broker import private_broker  # noqa: F401 - a fixture

SCALE = max(1, int(os.environ.get("TEST_FAULTS_SCALE", "1")))


@pytest.fixture
async def provider() -> AsyncIterator[FaultyTwilio]:
    """A Twilio-format provider on loopback that can be slow, hang or fail."""
    async with FaultyTwilio(seed=7) as fake:
        yield fake
