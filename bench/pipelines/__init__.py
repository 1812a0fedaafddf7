"""The pipelines under test, each started as real processes on its own vhost.

A pipeline is set up once per run (its database), then started once per latency on a
preloaded queue, measured, and stopped. ``Pipeline.start`` returns only when every
worker process said it is consuming.
"""

from __future__ import annotations

import importlib
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc

PYTHON = sys.executable


@dataclass(frozen=True)
class Context:
    """Where a pipeline runs: its vhost, the fake provider, a scratch directory."""

    amqp_url: str
    fake_url: str
    workdir: Path


class Pipeline(ABC):
    """One way of turning queued requests into provider calls."""

    name: str
    wire: str  # "smsrelay" or "celery": the publisher's message format
    processes: int = 1

    async def setup(self, ctx: Context) -> None:  # noqa: B027 - most pipelines hold no state
        """Prepare what outlives one start (a database); once per run."""

    async def teardown(self) -> None:  # noqa: B027
        """Drop what ``setup`` made."""

    @abstractmethod
    def start(self, ctx: Context, prefetch: int, tag: str) -> list[Proc]:
        """Start the worker process(es) and wait until each consumes."""

    def describe(self) -> str:
        """One line for the report: how this pipeline is configured (prefetch aside)."""
        return self.name


def env(**extra: str) -> dict[str, str]:
    """The harness's environment without stray SMSRELAY_* or OTEL_* settings, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SMSRELAY_", "OTEL_"))}
    root = str(Path(__file__).resolve().parents[2])
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (root, clean.get("PYTHONPATH")) if p)
    return {**clean, **extra}


# name → (module, factory, keyword arguments); modules are imported only when chosen,
# so that the bare and smsrelay pipelines run without Celery or the Twilio SDK installed.
REGISTRY: dict[str, tuple[str, str, dict[str, object]]] = {
    "limit": ("bench.pipelines.limit", "LimitPipeline", {}),
    "smsrelay-sqlite": ("bench.pipelines.smsrelay_worker", "SmsrelayPipeline", {"db": "sqlite"}),
    "smsrelay-pg": ("bench.pipelines.smsrelay_worker", "SmsrelayPipeline", {"db": "postgresql"}),
    # The same worker with tracing on, every message sampled, spans sent over OTLP/HTTP.
    "smsrelay-sqlite-traced": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "tracing": True},
    ),
    # The same worker with a price table, without and with (non-binding) shared limits.
    "smsrelay-sqlite-priced": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "prices": True},
    ),
    "smsrelay-sqlite-limits": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "limits": True},
    ),
    # Tracing on as recommended for production: a share of the traces sampled.
    "smsrelay-sqlite-traced-10pct": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "tracing": True, "ratio": 0.1},
    ),
    "smsrelay-sqlite-traced-1pct": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "tracing": True, "ratio": 0.01},
    ),
    "smsrelay-sqlite-x2": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "processes": 2},
    ),
    "smsrelay-pg-x2": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "postgresql", "processes": 2},
    ),
    # `smsrelay worker --processes 2`: one supervisor, two worker processes.
    "smsrelay-sqlite-p2": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "sqlite", "supervised": 2},
    ),
    "smsrelay-pg-p2": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "postgresql", "supervised": 2},
    ),
    # PostgreSQL holding 1,000,000 sent messages and as many receipts before the run.
    "smsrelay-pg-1m": (
        "bench.pipelines.smsrelay_worker",
        "SmsrelayPipeline",
        {"db": "postgresql", "seed_receipts": 1_000_000},
    ),
    "celery-prefork": ("bench.pipelines.celery_peer", "CeleryPipeline", {"pool": "prefork"}),
    "celery-threads": ("bench.pipelines.celery_peer", "CeleryPipeline", {"pool": "threads"}),
    "celery-gevent": ("bench.pipelines.celery_peer", "CeleryPipeline", {"pool": "gevent"}),
}


def make(name: str, **options: object) -> Pipeline:
    """The pipeline called ``name`` (a key of ``REGISTRY``)."""
    module, factory, kwargs = REGISTRY[name]
    cls = getattr(importlib.import_module(module), factory)
    pipeline: Pipeline = cls(name=name, **kwargs, **options)
    return pipeline
