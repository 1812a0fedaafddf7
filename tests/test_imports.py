"""What producers and the dead-letter tools import: the broker client, never the worker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The worker, the store, the API and what they pull in: a producer needs none of them.
FORBIDDEN = (
    "smsrelay.amqp",
    "smsrelay.dispatch",
    "smsrelay.runtime",
    "smsrelay.store",
    "smsrelay.api",
    "smsrelay.providers",
    "alembic",
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "botocore",
)


def loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter holds after ``import module``."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", ["smsrelay.client", "smsrelay.dlq"])
def test_producer_modules_do_not_import_the_worker(module: str) -> None:
    """Importing the client or dlq loads no worker, store, API or migration module."""
    loaded = loaded_by(module)
    heavy = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f"{f}."))
    assert heavy == []
    assert "aio_pika" in loaded and "smsrelay.topology" in loaded
