"""The contract every provider adapter passes, checked against the provider's own API description.

A provider's test module subclasses ``ProviderContractTest`` and fills in the blanks::

    class TestAcmeContract(ProviderContractTest):
        provider_type = "acme"                     # the name in smsrelay.providers.REGISTRY
        spec = "acme/openapi.yml"                  # under the specs directory; None: no spec

        def serve(self):                           # an async context manager yielding the fake
            return AcmeFake()

        def settings(self, fake):                  # settings pointing the adapter at the fake
            return AcmeSettings(base_url=fake.url, api_key=fake.api_key, sender="Acme")

        def arrange_failure(self, fake, to, kind):  # make sends to `to` fail: FAILURES[kind]
            fake.fail(to, status=..., code=...)

        def mis_build(self, request):              # a request the spec must refuse
            return replace(request, body=b"...")

Every subclass then gets the same tests: a send returns the provider's message id, each
request the adapter sent validates against the spec (plus ``check_extensions`` for rules
the schema cannot say), the fake's answers validate too (so the fake cannot drift from
the provider), a mis-built request is refused (so the validation can fail at all), and
the common failures map onto the error tree. ``CONTRACTS`` lists the subclasses by
provider type: the registry guard test fails for a registered provider without one.

``test_send_against_prism_mock`` sends one valid message to Stoplight Prism serving the
spec (``tests/providers/prism.py``): a second, independent validator of the same contract
that also checks the path, method and auth as a server would. ``prism_base_path`` is the
base path of the spec's server URL that Prism does not serve (Telnyx: ``"/v2"``);
``prism_settings`` builds the adapter's settings for Prism (default: ``settings(fake)``
with ``base_url`` replaced); ``prism_skip`` names why a spec cannot be served by Prism.
``test_prism_refuses_the_mis_built_request`` replays ``mis_build``'s request to Prism, so
Prism's verdict is shown to fail too. Without ``node_modules/.bin/prism`` both tests skip,
except in CI (``CI=true``) where they fail.

The descriptions are vendored in ``tests/providers/specs/`` (``SOURCES.md`` there says where
each came from, its version and licence): the suite reads nothing outside the repository.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse
from werkzeug.datastructures import Headers

from smsrelay.errors import ProviderError, RecipientRejected, TransientProviderError
from smsrelay.models import SendRequest, SendResult, validate_request
from smsrelay.providers import Provider, ProviderSettings, Webhook, build, provider_class
from tests.conftest import eventually, queue_settled
from tests.integration.harness import event_log, publish_raw, running_worker
from tests.integration.harness import request as wire_request
from tests.providers import prism

CONTRACTS: dict[str, list[type[ProviderContractTest]]] = {}
"""Provider type name → the contract test classes that declare it."""

FAILURES: dict[str, type[ProviderError]] = {
    "recipient": RecipientRejected,
    "transient": TransientProviderError,
}
"""The failure kinds every provider's fake can be told to produce, and what they raise."""


E = TypeVar("E", bound=BaseException)

TO = "+14155550123"
"""The recipient of the provider test modules' messages."""


class ContractError(AssertionError):
    """A request (or a fake's answer) does not match the provider's API description."""


@dataclass(frozen=True)
class CapturedRequest:
    """A request as it reached a fake, and the answer the fake gave (if it recorded one)."""

    method: str
    path: str
    headers: Mapping[str, str]
    content_type: str
    body: bytes
    query: str = ""
    status: int | None = None
    answer: bytes | None = None


def message(to: str = TO, **fields: Any) -> SendRequest:
    """The provider test modules' valid request (to ``to``, other fields overridable)."""
    return validate_request({"id": "m-1", "to": to, "body": "Your code is 123456", **fields})


@dataclass
class WebhookCall:
    """A webhook as openapi-core's WebhookRequest protocol wants it."""

    name: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "post"
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        self.parameters = RequestParameters(header=Headers(self.headers))


def serve_fixture(fake_class: Callable[[], AbstractAsyncContextManager[Any]]) -> Any:
    """A pytest fixture serving a ``fake_class()`` for one test.

    In a provider's test module: ``fake = serve_fixture(AcmeFake)``.
    """

    @pytest.fixture
    async def serve() -> AsyncIterator[Any]:
        async with fake_class() as running:
            yield running

    return serve


def adapter_fixture(settings_for: Callable[[Any], ProviderSettings]) -> Any:
    """A pytest fixture: the adapter built from ``settings_for(fake)``, closed after the test.

    In a provider's test module: ``acme = adapter_fixture(settings_for)``; the adapter is
    named after its type and points at the module's ``fake`` fixture.
    """

    @pytest.fixture
    async def adapter(fake: Any) -> AsyncIterator[Provider]:
        settings = settings_for(fake)
        provider = build(settings.type, settings)
        yield provider
        await provider.close()

    return adapter


def with_header(webhook: Webhook, name: str, value: str | None) -> Webhook:
    """``webhook`` with header ``name`` (lower-case) set to ``value``, or removed for None."""
    headers = {k: v for k, v in webhook.headers.items() if k != name}
    if value is not None:
        headers[name] = value
    return replace(webhook, headers=headers)


async def send_error(provider: Provider, request: SendRequest, expected: type[E]) -> E:
    """The error ``provider`` raises for ``request``; the send must raise ``expected``."""
    with pytest.raises(expected) as caught:
        await provider.send(request)
    return caught.value


async def send_error_with(settings: ProviderSettings, request: SendRequest, expected: type[E]) -> E:
    """The error an adapter built from ``settings`` raises for ``request`` (then closed)."""
    provider = build(settings.type, settings)
    try:
        return await send_error(provider, request, expected)
    finally:
        await provider.close()


async def send_with(settings: ProviderSettings, *requests: SendRequest) -> SendResult | None:
    """Send ``requests`` in turn through an adapter built from ``settings`` (then closed).

    The last result, or None when there were no requests."""
    provider = build(settings.type, settings)
    result = None
    try:
        for request in requests:
            result = await provider.send(request)
    finally:
        await provider.close()
    return result


async def assert_refused_connection_is_transient(settings: ProviderSettings) -> None:
    """A send to where nothing listens raises TransientProviderError with code "network"."""
    error = await send_error_with(settings, message(), TransientProviderError)
    assert error.code == "network"


def assert_table_class(error: BaseException, expected: type[ProviderError], code: str) -> None:
    """An error-table row: exactly the class the table names (not a subclass), its code kept."""
    assert type(error) is expected
    assert isinstance(error, ProviderError) and error.code == code


SPECS_DIR = Path(__file__).resolve().parent / "specs"
"""The vendored provider API descriptions (see ``specs/SOURCES.md``)."""


@functools.cache
def spec_document(relative: str) -> dict[str, Any]:
    """The parsed description ``relative`` to ``SPECS_DIR`` (cached: Twilio's is 1.8 MB)."""
    path = spec_path(relative)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    assert isinstance(data, dict), f"{path} is not an OpenAPI document"
    return data


@functools.cache
def openapi(relative: str) -> OpenAPI:
    """An openapi-core validator for the description ``relative`` to ``SPECS_DIR``."""
    # from_dict, not from_file_path: the latter fails on the Twilio file.
    return OpenAPI.from_dict(spec_document(relative))


def spec_path(relative: str) -> Path:
    """The file of the description ``relative`` to ``SPECS_DIR`` (fails when missing)."""
    path = SPECS_DIR / relative
    if not path.is_file():
        pytest.fail(f"{path} is missing: vendor it in {SPECS_DIR} (see SOURCES.md there)")
    return path


def spec_server(relative: str) -> str:
    """Scheme and host of the description's first server, e.g. ``https://api.twilio.com``."""
    url = urlsplit(spec_document(relative)["servers"][0]["url"])
    return f"{url.scheme}://{url.netloc}"


def as_openapi_request(relative: str, request: CapturedRequest) -> MockRequest:
    """``request`` as openapi-core sees it, sent to the spec's server rather than the fake."""
    return MockRequest(
        spec_server(relative),
        request.method,
        request.path,
        args={k: v[-1] for k, v in parse_qs(request.query).items()},
        headers=dict(request.headers),
        data=request.body,
        content_type=request.content_type.lower(),
    )


def validate_against_spec(relative: str, request: CapturedRequest) -> None:
    """Raise ``ContractError`` unless ``request`` (and its answer) match the spec."""
    try:
        openapi(relative).validate_request(as_openapi_request(relative, request))
    except OpenAPIError as exc:
        raise ContractError(f"{request.method} {request.path}: {_describe(exc)}") from exc


def validate_answer(relative: str, request: CapturedRequest) -> None:
    """Raise ``ContractError`` unless the fake's 2xx answer matches the spec."""
    assert request.status is not None and request.answer is not None
    response = MockResponse(request.answer, request.status, content_type="application/json")
    try:
        openapi(relative).validate_response(as_openapi_request(relative, request), response)
    except OpenAPIError as exc:
        raise ContractError(f"answer to {request.path}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    # openapi-core puts the useful detail (which field, which rule) in the cause.
    cause = exc.__cause__ or exc.__context__
    return f"{exc} ({cause})" if cause is not None else str(exc)


def _prism_report(
    violations: list[str], error: ProviderError | None, recorder: prism.PrismRecorder
) -> str:
    lines = ["Prism refused the adapter's request:" if violations else "the send failed:"]
    lines += [f"  {v}" for v in violations]
    if error is not None:
        lines.append(f"  the adapter raised {type(error).__name__}: {error}")
    if not recorder.exchanges:
        lines.append("  (the adapter sent nothing to Prism)")
    return "\n".join(lines)


async def _replay(url: str, request: CapturedRequest) -> None:
    """Send a captured request again, as it was, to ``url``."""
    skipped = {"host", "content-length", "transfer-encoding", "connection"}
    headers = {k: v for k, v in request.headers.items() if k.lower() not in skipped}
    target = f"{url}{request.path}?{request.query}" if request.query else url + request.path
    async with (
        aiohttp.ClientSession() as session,
        session.request(request.method, target, headers=headers, data=request.body) as resp,
    ):
        await resp.read()


def captured_from(records: list[Any]) -> list[CapturedRequest]:
    """Turn a fake's records (with method, path, headers, content_type, body) into requests."""
    return [
        CapturedRequest(
            r.method,
            r.path,
            r.headers,
            r.content_type,
            r.body,
            getattr(r, "query", ""),
            getattr(r, "status", None),
            getattr(r, "answer", None),
        )
        for r in records
    ]


class ProviderContractTest:
    """Base of every provider's contract tests; see the module docstring for the recipe."""

    provider_type: ClassVar[str]
    spec: ClassVar[str | None] = None
    recipient: ClassVar[str] = "+14155550123"
    prism_base_path: ClassVar[str] = ""
    prism_skip: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "provider_type" in cls.__dict__:
            CONTRACTS.setdefault(cls.provider_type, []).append(cls)

    # -- what a provider's test module fills in -------------------------------------------

    def serve(self) -> AbstractAsyncContextManager[Any]:
        """An async context manager that starts the provider's fake and yields it."""
        raise NotImplementedError

    def settings(self, fake: Any) -> ProviderSettings:
        """Settings that point the adapter at ``fake``."""
        raise NotImplementedError

    def arrange_failure(self, fake: Any, to: str, kind: str) -> None:
        """Make sends to ``to`` fail with the ``FAILURES[kind]`` kind of error."""
        raise NotImplementedError

    def captured(self, fake: Any) -> list[CapturedRequest]:
        """The requests the adapter sent to ``fake``, oldest first."""
        return captured_from(fake.received)

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        """``request`` broken the way a buggy adapter might break it; the spec must refuse it."""
        raise NotImplementedError("a provider with a spec must show that its spec can fail")

    def check_extensions(self, request: CapturedRequest) -> None:
        """Rules the spec states outside its schema (e.g. vendor extensions)."""

    def check_answer(self, request: CapturedRequest) -> None:
        """Raise ``ContractError`` unless the fake's 2xx answer to ``request`` matches the spec."""
        assert self.spec is not None
        validate_answer(self.spec, request)

    def prism_settings(self, fake: Any, url: str) -> ProviderSettings:
        """Settings that point the adapter at Prism; ``url`` stands for the spec's server URL."""
        return self.settings(fake).model_copy(update={"base_url": url})

    def send_request(self, to: str | None = None, **fields: Any) -> SendRequest:
        """A valid request to ``to`` (default ``recipient``)."""
        data = {"id": "contract-1", "to": to or self.recipient, "body": "Contract test", **fields}
        return validate_request(data)

    def validate(self, request: CapturedRequest) -> None:
        """Raise ``ContractError`` unless ``request`` matches the spec and its extensions."""
        assert self.spec is not None
        validate_against_spec(self.spec, request)
        self.check_extensions(request)

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture(scope="session")
    @classmethod
    def prism_pool(cls) -> Iterator[prism.PrismPool]:
        """This process's Prism servers, one per spec, stopped when the session ends."""
        yield prism.POOL
        prism.POOL.stop()

    @pytest.fixture
    async def fake(self) -> AsyncIterator[Any]:
        """The running fake."""
        async with self.serve() as running:
            yield running

    @pytest.fixture
    async def connect(self, fake: Any) -> AsyncIterator[Callable[[], Provider]]:
        """Build the adapter against the fake (after arranging failures); closed afterwards."""
        made: list[Provider] = []

        def make() -> Provider:
            made.append(build(f"{self.provider_type}-contract", self.settings(fake)))
            return made[-1]

        yield make
        for provider in made:
            await provider.close()

    async def _send_one(self, connect: Callable[[], Provider]) -> SendResult:
        return await connect().send(self.send_request())

    # -- the contract ---------------------------------------------------------------------

    def test_registered_class_takes_these_settings(self, fake: Any) -> None:
        """The registry resolves the type name to a class whose settings model fits."""
        cls = provider_class(self.provider_type)
        assert cls.type_name == self.provider_type
        assert isinstance(self.settings(fake), cls.settings_class)

    async def test_send_returns_the_provider_message_id(
        self, fake: Any, connect: Callable[[], Provider]
    ) -> None:
        """A send returns the id the provider gave the message."""
        result = await self._send_one(connect)
        assert result.provider_message_id
        answers = [r.answer for r in self.captured(fake) if r.answer is not None]
        if answers:
            assert any(result.provider_message_id.encode() in a for a in answers)

    async def test_valid_send_matches_the_spec(
        self, fake: Any, connect: Callable[[], Provider]
    ) -> None:
        """Every request the adapter sends for a valid message validates against the spec."""
        self._needs_spec()
        await self._send_one(connect)
        requests = self.captured(fake)
        assert requests, "the adapter sent nothing to the fake"
        for request in requests:
            self.validate(request)

    async def test_fake_answers_match_the_spec(
        self, fake: Any, connect: Callable[[], Provider]
    ) -> None:
        """The fake's success answers validate against the spec, so the fake cannot drift."""
        self._needs_spec()
        await self._send_one(connect)
        answered = [r for r in self.captured(fake) if r.answer and 200 <= (r.status or 0) < 300]
        if not answered:
            pytest.skip("this fake does not record its answers")
        for request in answered:
            self.check_answer(request)

    async def test_mis_built_request_is_refused(
        self, fake: Any, connect: Callable[[], Provider]
    ) -> None:
        """A request broken by ``mis_build`` fails validation: the check can catch a bug."""
        self._needs_spec()
        await self._send_one(connect)
        broken = self.mis_build(self.captured(fake)[0])
        with pytest.raises(ContractError):
            self.validate(broken)

    @pytest.mark.parametrize("kind", sorted(FAILURES))
    async def test_failure_maps_onto_the_error_tree(
        self, fake: Any, connect: Callable[[], Provider], kind: str
    ) -> None:
        """A rejected recipient is permanent, a provider outage is transient."""
        to = "+14155550100"
        self.arrange_failure(fake, to, kind)
        with pytest.raises(FAILURES[kind]) as caught:
            await connect().send(self.send_request(to))
        assert to not in str(caught.value), "the full number leaked into the error text"

    async def test_send_against_prism_mock(self, fake: Any, prism_pool: prism.PrismPool) -> None:
        """Prism serving the provider's spec accepts the adapter's request for a valid message."""
        target = self._prism_for(prism_pool)
        async with prism.PrismRecorder(target, self.prism_base_path) as recorder:
            error = await self._send_through(fake, recorder.url + self.prism_base_path)
        violations = recorder.verdict()
        if violations or error is not None:
            pytest.fail(_prism_report(violations, error, recorder))

    async def test_prism_refuses_the_mis_built_request(
        self, fake: Any, connect: Callable[[], Provider], prism_pool: prism.PrismPool
    ) -> None:
        """Prism refuses the request ``mis_build`` breaks, so its verdict can fail at all."""
        target = self._prism_for(prism_pool)
        await self._send_one(connect)
        broken = self.mis_build(self.captured(fake)[0])
        async with prism.PrismRecorder(target, self.prism_base_path) as recorder:
            await _replay(recorder.url, broken)
        assert recorder.verdict(), f"Prism accepted the mis-built {broken.method} {broken.path}"

    def _prism_for(self, prism_pool: prism.PrismPool) -> str:
        self._needs_spec()
        if self.prism_skip:
            pytest.skip(self.prism_skip)
        prism.require_prism()
        assert self.spec is not None
        return prism_pool.url(spec_path(self.spec))

    async def _send_through(self, fake: Any, url: str) -> ProviderError | None:
        provider = build(f"{self.provider_type}-prism", self.prism_settings(fake, url))
        try:
            result = await provider.send(self.send_request())
        except ProviderError as exc:
            return exc
        finally:
            await provider.close()
        assert result.provider_message_id, "the adapter returned no message id for Prism's answer"
        return None

    async def test_worker_delivers_through_it_end_to_end(
        self, fake: Any, amqp_url: str, sqlite_url: str
    ) -> None:
        """A request published to `sms` goes through a real worker and this adapter, once, and ends `sent`."""
        if self.provider_type == "simulator":
            pytest.skip("the worker tests cover the simulator")
        provider = self.settings(fake).model_dump(exclude_none=True)
        routes = {"*": [self.provider_type]}
        mid = f"e2e-{self.provider_type}"
        async with (
            event_log(amqp_url) as events,
            running_worker(
                amqp_url, sqlite_url, providers={self.provider_type: provider}, routes=routes
            ) as rt,
        ):
            await publish_raw(amqp_url, [wire_request(mid, to=self.recipient)] * 2)
            await eventually(lambda: events.states(mid) == ["sent"])
            await queue_settled(amqp_url)
            record = await rt.store.get(mid)
        assert record is not None and record.provider == self.provider_type
        assert len(self.captured(fake)) == 1, "the duplicate publish reached the provider"
        assert events.of(mid)[0]["provider_message_id"] == record.provider_message_id

    def _needs_spec(self) -> None:
        if self.spec is None:
            pytest.skip(f"{self.provider_type} has no published API description")
