"""POST /v1/verifications and its check: codes sent as OTPs, hashed, limited, feedback."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from smsrelay.otp.verify import CheckResult
from smsrelay.store import SqlStore
from smsrelay.store.verifications import VerificationStore
from tests.api.support import Api, MemoryPublisher, auth, running_api
from tests.otp.conftest import VERIFICATION_KEY, otp_settings

TO = "+14155550123"


def _code(api: Api, index: int = -1) -> str:
    """The code inside the OTP the app published (the test plays the phone)."""
    publisher = api.publisher
    assert isinstance(publisher, MemoryPublisher)
    match = re.search(r"\d{4,10}", publisher.requests[index].body)
    assert match is not None
    return match.group(0)


async def _start(api: Api, **fields: Any) -> Any:
    return await api.client.post("/v1/verifications", json={"to": TO, **fields}, headers=auth())


async def _check(api: Api, vid: str, code: str) -> Any:
    return await api.client.post(
        f"/v1/verifications/{vid}/check", json={"code": code}, headers=auth()
    )


async def test_code_is_sent_as_an_otp_and_approves_once(api: Api) -> None:
    """Start publishes one kind-otp request carrying the code; the right code is approved once."""
    started = await _start(api, code_length=8)
    assert started.status_code == 201, started.text
    body = started.json()
    publisher = api.publisher
    assert isinstance(publisher, MemoryPublisher)
    [message] = publisher.requests
    assert message.kind.value == "otp" and message.id == body["message_id"]
    assert message.expires_at is not None
    code = _code(api)
    assert len(code) == 8 and code not in started.text
    answer = await _check(api, body["id"], code)
    assert answer.json() == {"id": body["id"], "status": "approved", "attempts_left": 4}
    assert (await _check(api, body["id"], code)).status_code == 409


async def test_brute_force_stops_at_the_attempt_limit(api: Api) -> None:
    """Guessing every code: 5 are counted as denied, then too_many_attempts, even for the right one."""
    vid = (await _start(api, code_length=4)).json()["id"]
    right = _code(api)
    guesses = [f"{n:04d}" for n in range(300) if f"{n:04d}" != right] + [right]
    answers = [(await _check(api, vid, guess)).json()["status"] for guess in guesses]
    assert answers[:5] == ["denied"] * 5
    assert set(answers[5:]) == {"too_many_attempts"}
    record = await VerificationStore(api.store).get(vid)
    assert record is not None and record.attempts == 5


async def test_attempts_left_counts_down(api: Api) -> None:
    """Each wrong code costs one attempt and says how many remain."""
    vid = (await _start(api)).json()["id"]
    wrong = "000000" if _code(api) != "000000" else "111111"
    left = [(await _check(api, vid, wrong)).json()["attempts_left"] for _ in range(3)]
    assert left == [4, 3, 2]


async def test_expired_code_is_expired_and_counts_nothing(api: Api, store: SqlStore) -> None:
    """A check after the TTL answers expired, even with the right code, and counts no attempt."""
    vid = (await _start(api, ttl=30)).json()["id"]
    later = datetime.now(UTC) + timedelta(seconds=31)
    checked = await VerificationStore(store).check(
        vid, VERIFICATION_KEY.encode(), _code(api), later
    )
    assert checked is not None and checked.result is CheckResult.EXPIRED
    record = await VerificationStore(store).get(vid)
    assert record is not None and record.attempts == 0


async def test_resend_within_cooldown_is_429(api: Api) -> None:
    """A second start for the same number within the cooldown is refused with Retry-After."""
    assert (await _start(api)).status_code == 201
    again = await _start(api)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1


async def test_resend_replaces_the_code(store: SqlStore, sqlite_url: str) -> None:
    """After the cooldown a start resends a new code for the same verification; the old one fails."""
    settings = otp_settings(sqlite_url, resend_cooldown=0)
    async with running_api(settings, store, MemoryPublisher()) as api:
        first = (await _start(api)).json()
        old = _code(api)
        second = (await _start(api)).json()
        new = _code(api)
        assert second["id"] == first["id"] and second["sends"] == 2
        assert second["message_id"] != first["message_id"]
        if old != new:
            assert (await _check(api, first["id"], old)).json()["status"] == "denied"
        assert (await _check(api, first["id"], new)).json()["status"] == "approved"


async def test_codes_per_number_are_limited_per_window(store: SqlStore, sqlite_url: str) -> None:
    """Beyond max_sends_per_number codes to one number in the window, starts answer 429."""
    settings = otp_settings(sqlite_url, resend_cooldown=0, max_sends_per_number=2)
    async with running_api(settings, store, MemoryPublisher()) as api:
        assert [(await _start(api)).status_code for _ in range(3)] == [201, 201, 429]
        other = await api.client.post(
            "/v1/verifications", json={"to": "+14155550199"}, headers=auth()
        )
        assert other.status_code == 201


async def test_bad_input_is_422(api: Api) -> None:
    """A bad number, length, TTL, template or code is 422, never 500."""
    for fields in (
        {"to": "+1415"},
        {"code_length": 3},
        {"code_length": 11},
        {"ttl": 5},
        {"template": "no placeholder"},
        {"locale": "x" * 40},
        {"extra": 1},
    ):
        answer = await api.client.post(
            "/v1/verifications", json={"to": TO, **fields}, headers=auth()
        )
        assert answer.status_code == 422, fields
    vid = (await _start(api)).json()["id"]
    for code in ("12", "abcdef", "1" * 11):
        assert (await _check(api, vid, code)).status_code == 422


async def test_unknown_verification_is_404(api: Api) -> None:
    """Checking an id that does not exist is 404."""
    answer = await _check(api, "vf-" + "0" * 32, "123456")
    assert answer.status_code == 404


async def test_without_a_key_verifications_are_503(store: SqlStore, sqlite_url: str) -> None:
    """With neither verification.key nor digest_key configured, nothing is sent (503)."""
    from tests.api.support import api_settings

    publisher = MemoryPublisher()
    async with running_api(api_settings(sqlite_url), store, publisher) as api:
        assert (await _start(api)).status_code == 503
    assert publisher.requests == []


async def test_verifications_need_the_api_key(api: Api) -> None:
    """Without the API key, starting a verification is 401."""
    answer = await api.client.post("/v1/verifications", json={"to": TO})
    assert answer.status_code == 401


async def test_approved_check_is_conversion_feedback(api: Api, store: SqlStore) -> None:
    """An approved check records a conversion for the message that carried the code."""
    started = (await _start(api)).json()
    await _check(api, started["id"], _code(api))
    since = datetime.now(UTC) - timedelta(minutes=1)
    rates = await VerificationStore(store).conversion_rates(since)
    assert rates["US"].sent == 1 and rates["US"].converted == 1
