"""docs/asyncapi.yaml and the code describe one and the same v1 contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

from smsrelay import topology
from smsrelay.errors import InvalidRequest
from smsrelay.models import (
    ID_PATTERN,
    EventError,
    Kind,
    SendRequest,
    State,
    StatusEvent,
    parse_request,
    validate_request,
)

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
# The document is registered under this URI so its own "#/..." references resolve.
DOC_URI = "urn:smsrelay:asyncapi"

SCHEMAS = DOC["components"]["schemas"]
MESSAGES = DOC["components"]["messages"]
CHANNELS = DOC["channels"]


def _validator(pointer: str) -> jsonschema.Draft7Validator:
    """A validator for the schema at ``pointer`` inside the document."""
    registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT7.create_resource(DOC))
    return jsonschema.Draft7Validator(
        {"$ref": f"{DOC_URI}#{pointer}"},
        registry=registry,
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )


def _examples(message: str) -> list[Any]:
    return [pytest.param(ex, id=ex["name"]) for ex in MESSAGES[message]["examples"]]


def _wire_fields(model: type[SendRequest]) -> dict[str, bool]:
    """Wire name → required, for the fields that travel (by alias, without excluded ones)."""
    return {
        field.alias or name: field.is_required()
        for name, field in model.model_fields.items()
        if not field.exclude
    }


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(pointer: str) -> Any:
    node: Any = DOC
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _amqp(channel: str) -> dict[str, Any]:
    binding: dict[str, Any] = CHANNELS[channel]["bindings"]["amqp"]
    return binding


def _routes_to_send_queue(routing_key: str) -> bool:
    """Whether the topic binding ``sms.send.#`` matches ``routing_key``."""
    prefix = topology.SEND_BINDING.removesuffix(".#")
    return routing_key == prefix or routing_key.startswith(prefix + ".")


def test_document_is_asyncapi_3_0_0() -> None:
    """The document parses as YAML and declares AsyncAPI 3.0.0 with the v1 parts."""
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["defaultContentType"] == "application/json"
    assert {"send", "dead", "status"} <= set(CHANNELS)
    assert {"sendSms", "receiveStatus"} <= set(DOC["operations"])


def test_every_reference_resolves() -> None:
    """Every local $ref in the document points at something that exists."""
    refs = _refs(DOC)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        assert _resolve(ref) is not None, ref


def test_operations_send_requests_and_receive_events() -> None:
    """A producer sends on the send channel and receives on the status channel."""
    send, receive = DOC["operations"]["sendSms"], DOC["operations"]["receiveStatus"]
    assert (send["action"], send["channel"]["$ref"]) == ("send", "#/channels/send")
    assert (receive["action"], receive["channel"]["$ref"]) == ("receive", "#/channels/status")
    assert send["bindings"]["amqp"]["deliveryMode"] == 2
    assert MESSAGES["sendRequest"]["contentType"] == "application/json"


def test_request_fields_match_send_request() -> None:
    """The request schema has SendRequest's wire names (`from`, no `country`) and required."""
    schema = SCHEMAS["SendRequest"]
    fields = _wire_fields(SendRequest)
    assert "from" in fields
    assert "sender" not in fields
    assert "country" not in fields
    assert set(schema["properties"]) == set(fields)
    assert set(schema["required"]) == {name for name, required in fields.items() if required}


def test_request_schema_refuses_unknown_fields() -> None:
    """The request schema forbids fields it does not list, as the code does."""
    assert SCHEMAS["SendRequest"]["additionalProperties"] is False
    assert SendRequest.model_config.get("extra") == "forbid"


def test_kind_enum_and_default_match_code() -> None:
    """The `kind` enum lists Kind's values, and its default is the model's default."""
    kind = SCHEMAS["SendRequest"]["properties"]["kind"]
    assert kind["enum"] == [k.value for k in Kind]
    assert kind["default"] == SendRequest.model_fields["kind"].default == Kind.TRANSACTIONAL


def test_state_enums_match_code() -> None:
    """The event's `state` enum and the routing-key parameter both list State's values."""
    states = [s.value for s in State]
    assert SCHEMAS["StatusEvent"]["properties"]["state"]["enum"] == states
    assert CHANNELS["status"]["parameters"]["state"]["enum"] == states


def test_event_fields_match_status_event() -> None:
    """The event schema has StatusEvent's fields and required list, and EventError's."""
    schema = SCHEMAS["StatusEvent"]
    fields = StatusEvent.model_fields
    assert set(schema["properties"]) == set(fields)
    assert set(schema["required"]) == {n for n, f in fields.items() if f.is_required()}
    error = SCHEMAS["EventError"]
    assert set(error["properties"]) == set(error["required"]) == set(EventError.model_fields)


def test_id_pattern_matches_code() -> None:
    """The document's `id` pattern is the code's ID_PATTERN."""
    assert SCHEMAS["SendRequest"]["properties"]["id"]["pattern"] == ID_PATTERN


def test_body_of_1601_characters_is_refused_by_both() -> None:
    """A 1600-character body passes the code and the schema; 1601 characters fail both."""
    validator = _validator("/components/schemas/SendRequest")
    ok = {"id": "long-1", "to": "+14155550123", "body": "x" * 1600}
    too_long = {**ok, "body": "x" * 1601}
    validate_request(ok)
    validator.validate(ok)
    with pytest.raises(InvalidRequest):
        validate_request(too_long)
    assert not validator.is_valid(too_long)


@pytest.mark.parametrize("example", _examples("sendRequest") + _examples("retriedRequest"))
def test_request_example_is_valid_for_code_and_schema(example: dict[str, Any]) -> None:
    """Each request example is accepted by validate_request and by the document's schema."""
    payload = example["payload"]
    validate_request(payload)
    _validator("/components/schemas/SendRequest").validate(payload)


@pytest.mark.parametrize("example", _examples("statusEvent"))
def test_event_example_is_valid_for_code_and_schema(example: dict[str, Any]) -> None:
    """Each event example is a valid StatusEvent and matches the document's schema."""
    payload = example["payload"]
    event = StatusEvent.model_validate(payload)
    _validator("/components/schemas/StatusEvent").validate(payload)
    assert event.routing_key == CHANNELS["status"]["address"].format(state=event.state.value)


@pytest.mark.parametrize("example", _examples("deadLetter"))
def test_dead_letter_example_carries_the_codes_reason(example: dict[str, Any]) -> None:
    """Each dead-letter example's reason header is what the code says about its body."""
    payload = example["payload"]
    raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    with pytest.raises(InvalidRequest) as refused:
        parse_request(raw)
    assert example["headers"] == {topology.REASON_HEADER: refused.value.reason}
    _validator("/components/messages/deadLetter/headers").validate(example["headers"])


@pytest.mark.parametrize("example", _examples("retriedRequest"))
def test_retry_example_headers_match_schema(example: dict[str, Any]) -> None:
    """Each retry example carries an attempt count the headers schema accepts."""
    assert topology.ATTEMPT_HEADER in example["headers"]
    _validator("/components/messages/retriedRequest/headers").validate(example["headers"])


def test_send_bindings_match_topology() -> None:
    """The send channel's exchange, routing key and queue are the topology constants."""
    amqp = _amqp("send")
    assert CHANNELS["send"]["address"] == topology.SEND_ROUTING_KEY
    assert amqp["exchange"]["name"] == topology.EXCHANGE
    assert (amqp["exchange"]["type"], amqp["exchange"]["durable"]) == ("topic", True)
    queue = amqp["x-queue"]
    assert (queue["name"], queue["type"], queue["durable"]) == (topology.SEND_QUEUE, "quorum", True)
    assert queue["bindingKey"] == topology.SEND_BINDING
    assert queue["deadLetterExchange"] == topology.DLX


def test_dead_bindings_match_topology() -> None:
    """The dead channel is the queue sms.dead behind the fanout exchange sms.dlx."""
    amqp = _amqp("dead")
    assert CHANNELS["dead"]["address"] == amqp["queue"]["name"] == topology.DEAD_QUEUE
    assert amqp["x-exchange"]["name"] == topology.DLX
    assert amqp["x-exchange"]["type"] == "fanout"
    assert topology.REASON_HEADER in MESSAGES["deadLetter"]["headers"]["properties"]


def test_retry_bindings_match_topology() -> None:
    """Retry queues hang off sms.retry and dead-letter back to sms as sms.send.retry."""
    amqp = _amqp("retry")
    assert amqp["exchange"]["name"] == topology.RETRY_EXCHANGE
    queue = amqp["x-queue"]
    assert queue["namePrefix"] == topology.RETRY_QUEUE_PREFIX
    assert CHANNELS["retry"]["address"] == topology.RETRY_QUEUE_PREFIX + "{delay}"
    for example in CHANNELS["retry"]["parameters"]["delay"]["examples"]:
        assert topology.retry_queue(int(example.removesuffix("ms")) / 1000) == (
            topology.RETRY_QUEUE_PREFIX + example
        )
    assert queue["deadLetterExchange"] == topology.EXCHANGE
    assert queue["deadLetterRoutingKey"] == topology.RETRY_ROUTING_KEY
    assert topology.ATTEMPT_HEADER in MESSAGES["retriedRequest"]["headers"]["required"]


def test_status_bindings_match_topology() -> None:
    """Events go to the topic exchange sms.events with keys sms.status.<state>."""
    amqp = _amqp("status")
    assert amqp["exchange"]["name"] == topology.EVENTS_EXCHANGE
    assert (amqp["exchange"]["type"], amqp["exchange"]["durable"]) == ("topic", True)
    assert CHANNELS["status"]["address"] == topology.EVENT_KEY_PREFIX + "{state}"


def test_send_and_retry_routing_keys_reach_the_send_queue() -> None:
    """Both the producers' key and the retry key match the send queue's binding."""
    assert _routes_to_send_queue(topology.SEND_ROUTING_KEY)
    assert _routes_to_send_queue(topology.RETRY_ROUTING_KEY)
    assert _routes_to_send_queue(topology.SEND_ROUTING_KEY + ".billing")
    assert not _routes_to_send_queue(topology.EVENT_KEY_PREFIX + "sent")


def test_python_field_name_sender_is_refused() -> None:
    """A request spelling `from` as `sender` is refused, as the document's schema says."""
    payload = {"id": "a1", "to": "+14155550123", "body": "hi", "sender": "Acme"}
    assert not _validator("/components/schemas/SendRequest").is_valid(payload)
    with pytest.raises(InvalidRequest):
        validate_request(payload)
