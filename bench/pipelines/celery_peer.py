"""The peer: the Celery task around the official Twilio SDK a team would otherwise write.

Same RabbitMQ as broker, ``acks_late`` (the message is acked after the send, as in
smsrelay), results ignored, retries on Twilio and network errors. The task calls
``Client.messages.create`` — the SDK's whole request path (``TwilioHttpClient`` on a
pooled ``requests`` session, its headers, auth, and the parsing of the answer into a
``MessageInstance``). Two lines point it at the fake:

* ``client.api.base_url = FAKE_URL``: the API domain's base URL, which every request
  of the Messages resource is built from (the SDK's own ``edge``/``region`` settings
  only rewrite ``*.twilio.com`` host names, so they cannot reach loopback);
* mounting an ``http://`` adapter with a pool as large as the worker's concurrency,
  because the SDK tunes only its ``https://`` adapter and loopback is plain HTTP.

Run by the harness as
``celery -A bench.pipelines.celery_peer worker -P <pool> -c <n> --without-mingle --without-gossip``
with ``BENCH_AMQP_URL`` and ``BENCH_FAKE_URL`` set.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from celery import Celery
from celery.signals import worker_ready
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from bench.fake_provider import ACCOUNT_SID, AUTH_TOKEN, SENDER
from bench.pipelines import PYTHON, Context, Pipeline, env
from bench.procs import Proc

app = Celery("bench_peer", broker=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@/"))
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_default_queue="celery",
    broker_connection_retry_on_startup=True,
)

READY = "bench-peer consuming"


@worker_ready.connect
def _say_ready(**_: Any) -> None:
    # Celery logs "ready." only at INFO; the harness needs to know at any log level.
    print(READY, flush=True)


_client: Client | None = None
_lock = threading.Lock()


def twilio_client() -> Client:
    """One SDK client per worker process (created after the prefork fork)."""
    global _client
    with _lock:
        if _client is None:
            client = Client(ACCOUNT_SID, AUTH_TOKEN)
            client.api.base_url = os.environ["BENCH_FAKE_URL"]
            pool = int(os.environ.get("BENCH_HTTP_POOL", "10"))
            client.http_client.session.mount("http://", HTTPAdapter(pool_maxsize=pool))  # type: ignore[attr-defined]
            _client = client
    return _client


@app.task(
    name="bench.send_sms",
    autoretry_for=(TwilioRestException, requests.ConnectionError, requests.Timeout),
    retry_backoff=True,
    max_retries=5,
)
def send_sms(to: str, body: str) -> str:
    """Send one SMS through Twilio and return its sid."""
    message = twilio_client().messages.create(to=to, from_=SENDER, body=body)
    return str(message.sid)


class CeleryPipeline(Pipeline):
    """A Celery worker with the given pool on this module's app."""

    wire = "celery"

    def __init__(
        self,
        name: str,
        pool: str,
        celery_concurrency: int = 200,
        celery_loglevel: str = "WARNING",
        **_options: Any,
    ) -> None:
        self.name = name
        self.pool = pool
        # prefork defaults to one process per core, as `celery worker` does.
        self.concurrency = (os.cpu_count() or 2) if pool == "prefork" else celery_concurrency
        self.loglevel = celery_loglevel

    def start(self, ctx: Context, prefetch: int, tag: str) -> list[Proc]:
        argv = [
            *(PYTHON, "-m", "celery", "-A", "bench.pipelines.celery_peer", "worker"),
            *("-P", self.pool, "-c", str(self.concurrency), "-l", self.loglevel),
            *("--without-mingle", "--without-gossip", "-n", f"{tag}@%h"),
        ]
        environment = env(
            BENCH_AMQP_URL=ctx.amqp_url,
            BENCH_FAKE_URL=ctx.fake_url,
            BENCH_HTTP_POOL=str(self.concurrency),
        )
        proc = Proc(argv, ctx.workdir / f"{tag}.log", environment)
        proc.wait_for(READY)
        return [proc]

    def describe(self) -> str:
        return (
            f"Celery {self.pool} pool, concurrency {self.concurrency}, acks_late, "
            f"twilio SDK, log level {self.loglevel}"
        )
