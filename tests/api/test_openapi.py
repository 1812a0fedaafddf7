"""docs/openapi.json is the app's own document, and the app keeps to it (schemathesis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from smsrelay.api.openapi import document, main, render
from smsrelay.models import State, validate_request
from smsrelay.store import SqlStore, upgrade
from tests.api.support import API_KEY, Api, MemoryPublisher, api_settings, running_api

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
BOTH = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# The operations schemathesis explores (receipts are pinned by their own tests), and how:
# an operation that takes no input has no invalid input to generate.
OPERATIONS = [
    ("/v1/messages", "POST", BOTH),
    ("/v1/messages/{message_id}", "GET", BOTH),
    ("/healthz", "GET", (GenerationMode.POSITIVE,)),
    ("/readyz", "GET", (GenerationMode.POSITIVE,)),
    ("/metrics", "GET", (GenerationMode.POSITIVE,)),
]
KNOWN_ID = "known-1"


def test_committed_document_is_what_the_code_generates() -> None:
    """docs/openapi.json equals the generated document (regenerate: python -m smsrelay.api.openapi)."""
    assert DOC.read_text(encoding="utf-8") == render()


def test_check_mode_reports_a_stale_document(tmp_path: Path) -> None:
    """`python -m smsrelay.api.openapi --check` fails on a stale file and passes once written."""
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    assert main([str(stale), "--check"]) == 1
    assert main([str(stale)]) == 0
    assert main([str(stale), "--check"]) == 0


class Harness:
    """The app on a fresh SQLite store, driven from one event loop."""

    def __init__(self, runner: asyncio.Runner, tmp_path: Path) -> None:
        self.runner = runner
        self.url = f"sqlite+aiosqlite:///{tmp_path}/smsrelay.db"
        self.api: Api | None = None
        self._exit: Callable[[], Any] | None = None

    async def start(self) -> None:
        store = SqlStore.from_url(self.url)
        await upgrade(store.engine)
        await store.claim(validate_request({"id": KNOWN_ID, "to": "+14155550123", "body": "hi"}))
        await store.finish_message(
            KNOWN_ID, State.SENT, provider="simulator", provider_message_id="s1"
        )
        context = running_api(api_settings(self.url), store, MemoryPublisher())
        self.api = await context.__aenter__()

        async def stop() -> None:
            await context.__aexit__(None, None, None)
            await store.close()

        self._exit = stop

    def call(self, case: Case) -> httpx.Response:
        """Send ``case`` (with a valid key) exactly as schemathesis serialises it."""
        kwargs = case.as_transport_kwargs(
            base_url="http://testserver", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        prepared = requests.Request(**kwargs).prepare()
        body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
        assert self.api is not None and prepared.method is not None and prepared.url is not None
        request = self.api.client.request(
            prepared.method, prepared.url, content=body, headers=dict(prepared.headers)
        )
        return self.runner.run(request)

    def check(self, case: Case) -> None:
        """Call and validate against the document."""
        case.validate_response(self.call(case), checks=CHECKS)


def test_app_keeps_to_its_openapi_document(tmp_path: Path) -> None:
    """Generated requests (valid and invalid) never get a 5xx, and every answer matches the document."""
    schema = schemathesis.openapi.from_dict(document())
    with asyncio.Runner() as runner:
        harness = Harness(runner, tmp_path)
        runner.run(harness.start())
        try:
            for path, method, modes in OPERATIONS:
                operation = schema[path][method]
                for mode in modes:
                    explore(harness, operation.as_strategy(generation_mode=mode))
            messages = schema["/v1/messages"]["POST"]
            harness.check(messages.Case(body={"id": "x-1", "to": "+14155550123", "body": "hi"}))
            lookup = schema["/v1/messages/{message_id}"]["GET"]
            harness.check(lookup.Case(path_parameters={"message_id": KNOWN_ID}))
        finally:
            assert harness._exit is not None
            runner.run(harness._exit())


def explore(harness: Harness, strategy: Any) -> None:
    """A few dozen generated cases of one operation; kept small so CI stays fast."""

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        harness.check(case)

    run()
