"""docs/asyncapi.yaml describes the OTP lane as the topology declares it."""

from __future__ import annotations

from smsrelay import topology
from tests.test_contract_doc import CHANNELS, DOC, _amqp


def _matches(binding: str, routing_key: str) -> bool:
    """Whether a topic binding ``<prefix>.#`` matches ``routing_key``."""
    prefix = binding.removesuffix(".#")
    return routing_key == prefix or routing_key.startswith(prefix + ".")


def test_otp_channel_matches_topology() -> None:
    """The otp channel's key, queue, binding and retry key are the topology constants."""
    amqp = _amqp("otp")
    assert CHANNELS["otp"]["address"] == topology.OTP_ROUTING_KEY
    assert amqp["exchange"]["name"] == topology.EXCHANGE
    queue = amqp["x-queue"]
    assert (queue["name"], queue["type"]) == (topology.OTP_QUEUE, "quorum")
    assert queue["bindingKey"] == topology.OTP_BINDING
    assert queue["deadLetterExchange"] == topology.DLX
    assert queue["retryRoutingKey"] == topology.OTP_RETRY_ROUTING_KEY
    assert queue["retryQueuePrefix"] == topology.OTP_RETRY_QUEUE_PREFIX
    operation = DOC["operations"]["sendOtp"]
    assert (operation["action"], operation["channel"]["$ref"]) == ("send", "#/channels/otp")


def test_lane_and_send_bindings_are_disjoint() -> None:
    """Lane keys reach only the lane; send keys (sms.send.otp too) only sms.send."""
    lane_keys = [topology.OTP_ROUTING_KEY, topology.OTP_RETRY_ROUTING_KEY]
    send_keys = [topology.SEND_ROUTING_KEY, topology.RETRY_ROUTING_KEY, "sms.send.otp"]
    for key in lane_keys:
        assert _matches(topology.OTP_BINDING, key) and not _matches(topology.SEND_BINDING, key)
    for key in send_keys:
        assert _matches(topology.SEND_BINDING, key) and not _matches(topology.OTP_BINDING, key)
    assert topology.otp_retry_queue(5) == "sms.retry.otp.5000ms"


def test_verify_channel_matches_topology_and_code() -> None:
    """The verify channel's keys, queue and shapes are the topology's and the code's."""
    from smsrelay.otp.service import RefusalKind, StartVerification
    from smsrelay.otp.verify import CheckResult
    from smsrelay.verify_amqp import CheckRequest, FeedbackRequest

    amqp = _amqp("verify")
    assert amqp["x-queue"]["name"] == topology.VERIFY_QUEUE
    assert amqp["x-queue"]["bindingKey"] == topology.VERIFY_BINDING
    actions = CHANNELS["verify"]["parameters"]["action"]["enum"]
    keys = {CHANNELS["verify"]["address"].format(action=a) for a in actions}
    assert keys == {topology.VERIFY_START_KEY, topology.VERIFY_CHECK_KEY, topology.FEEDBACK_KEY}
    assert all(_matches(topology.VERIFY_BINDING, key) for key in keys)
    messages = DOC["components"]["messages"]
    for name, model in (
        ("verifyStart", StartVerification),
        ("verifyCheck", CheckRequest),
        ("verifyFeedback", FeedbackRequest),
    ):
        payload = messages[name]["payload"]
        assert set(payload["properties"]) == set(model.model_fields), name
        for example in messages[name]["examples"]:
            model.model_validate(example["payload"])
    answers = messages["verifyAnswer"]["payload"]["oneOf"]
    checked = next(a for a in answers if a["title"] == "VerifyChecked")
    assert checked["properties"]["status"]["enum"] == [r.value for r in CheckResult]
    error = next(a for a in answers if a["title"] == "VerifyError")
    kinds = error["properties"]["error"]["properties"]["kind"]["enum"]
    assert kinds == [k.value for k in RefusalKind]
