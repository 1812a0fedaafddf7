"""POST /v1/messages/{id}/feedback and conversion rates per country and prefix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smsrelay.store import SqlStore
from smsrelay.store.verifications import VerificationStore
from tests.api.support import Api, auth


async def _send(api: Api, mid: str, to: str, kind: str = "otp") -> None:
    answer = await api.client.post(
        "/v1/messages",
        json={"id": mid, "to": to, "body": "code 1234", "kind": kind},
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text


async def test_feedback_is_recorded_once(api: Api, store: SqlStore) -> None:
    """Feedback for a known message is 200 and counts once however often it is repeated."""
    await _send(api, "m-1", "+14155550123")
    for _ in range(2):
        answer = await api.client.post("/v1/messages/m-1/feedback", headers=auth())
        assert answer.json() == {"id": "m-1", "converted": True}
    rates = await VerificationStore(store).conversion_rates(datetime.now(UTC) - timedelta(hours=1))
    assert (rates["US"].sent, rates["US"].converted) == (1, 1)


async def test_feedback_for_an_unknown_message_is_404(api: Api) -> None:
    """Feedback naming no known message is 404; a malformed id is 422."""
    assert (await api.client.post("/v1/messages/nope/feedback", headers=auth())).status_code == 404
    bad = await api.client.post("/v1/messages/a%20b/feedback", headers=auth())
    assert bad.status_code == 422


async def test_conversion_rate_per_country_and_prefix(api: Api, store: SqlStore) -> None:
    """Rates group OTPs by country, or by the number without its last digits; bulk is left out."""
    for n, to in enumerate(["+14155550123", "+14155550124", "+447400123456", "+447400123457"]):
        await _send(api, f"o-{n}", to)
    await _send(api, "bulk-1", "+14155550125", kind="marketing")
    for mid in ("o-0", "o-1", "o-2"):
        await api.client.post(f"/v1/messages/{mid}/feedback", headers=auth())
    since = datetime.now(UTC) - timedelta(hours=1)
    verifications = VerificationStore(store)
    by_country = await verifications.conversion_rates(since)
    assert by_country["US"].rate == 1.0 and by_country["GB"].rate == 0.5
    by_prefix = await verifications.conversion_rates(since, by="prefix", keep_digits=4)
    assert (by_prefix["+1415555"].sent, by_prefix["+1415555"].converted) == (2, 2)
    assert (by_prefix["+44740012"].sent, by_prefix["+44740012"].converted) == (2, 1)
