"""AWS SNS: ``Publish`` straight to a phone number (query protocol, API version 2010-03-31).

One form-encoded ``POST /`` per message with ``Action=Publish``, ``PhoneNumber`` and
``Message``, signed with botocore's SigV4 (service ``sns``) and sent through the shared
aiohttp session. Message attributes set the SMS type (``Transactional`` for otp and
transactional messages, ``Promotional`` for marketing), the sender (``AWS.SNS.SMS.SenderID``
for an alphanumeric ID, ``AWS.MM.SMS.OriginationNumber`` for a number) and, when
configured, ``AWS.SNS.SMS.MaxPrice`` in USD. The XML ``PublishResponse`` carries the
``MessageId``; an error answer is ``<ErrorResponse><Error><Code>…<Message>…``. SNS's codes
(error shapes of botocore's ``sns/2010-03-31/service-2.json``, plus the codes AWS's front
door answers for every query API) map onto the error tree like this:

==========================  ====  ========================================  ======================
code                        HTTP  meaning                                   class
==========================  ====  ========================================  ======================
InvalidParameter            400   a parameter breaks a constraint; when it  RecipientRejected,
                                  names the PhoneNumber, the number is bad  else Permanent…
ParameterValueInvalid       400   same, for a parameter's value             as InvalidParameter
OptedOut                    400   the number opted out of the account's SMS RecipientRejected
ValidationException         400   a parameter is invalid                    PermanentProviderError
AuthorizationError          403   the IAM identity may not sns:Publish      AuthenticationFailed
InvalidClientTokenId        403   unknown access key id                     AuthenticationFailed
SignatureDoesNotMatch       403   wrong secret access key                   AuthenticationFailed
IncompleteSignature         400   the signature lacks a part                AuthenticationFailed
MissingAuthenticationToken  403   no signature at all                       AuthenticationFailed
ExpiredToken                403   the session token has expired             AuthenticationFailed
InvalidSecurity             403   not HTTPS or not SigV4                    AuthenticationFailed
Throttled                   429   the account's Publish rate is exceeded    RateLimited
Throttling                  400   the API's request rate is exceeded        RateLimited
ThrottlingException         400   same, as some endpoints spell it          RateLimited
InternalError               500   SNS failed                                TransientProviderError
ServiceUnavailable          503   SNS is unavailable                        TransientProviderError
==========================  ====  ========================================  ======================

A code not in the table falls back on the HTTP status: 429 → ``RateLimited``, 5xx →
``TransientProviderError``, 401/403 → ``AuthenticationFailed``, any other 4xx →
``PermanentProviderError``. ``OptedOut`` is not among Publish's declared errors: SNS
accepts an SMS to an opted-out number and drops it, which shows only in its delivery logs;
the code is mapped in case an endpoint answers it.

SNS checks the number's format only loosely (and moto, the test double, not at all), so the
adapter refuses a recipient that is not E.164 itself, before anything is sent.

Receipts: SNS reports SMS delivery status to CloudWatch Logs (when the account enables
delivery-status logging), never to a webhook, so this provider keeps the base class's
refusal of every webhook; delivery state would come from reading those logs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import ClassVar, Literal, NoReturn
from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import Field, SecretStr

from smsrelay.errors import (
    AuthenticationFailed,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RecipientRejected,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.models import Kind, SendRequest, SendResult
from smsrelay.providers.base import HttpProvider, ProviderSettings, scrub, secret

API_VERSION = "2010-03-31"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"

ERRORS: dict[str, type[ProviderError]] = {
    "InvalidParameter": PermanentProviderError,
    "ParameterValueInvalid": PermanentProviderError,
    "OptedOut": RecipientRejected,
    "ValidationException": PermanentProviderError,
    "AuthorizationError": AuthenticationFailed,
    "InvalidClientTokenId": AuthenticationFailed,
    "SignatureDoesNotMatch": AuthenticationFailed,
    "IncompleteSignature": AuthenticationFailed,
    "MissingAuthenticationToken": AuthenticationFailed,
    "ExpiredToken": AuthenticationFailed,
    "InvalidSecurity": AuthenticationFailed,
    "Throttled": RateLimited,
    "Throttling": RateLimited,
    "ThrottlingException": RateLimited,
    "InternalError": TransientProviderError,
    "ServiceUnavailable": TransientProviderError,
}
"""SNS error code → the class raised for it (the table above)."""

# Parameter errors that name the phone number mean the recipient, not the request, is bad.
_ABOUT_THE_NUMBER = re.compile(r"phone ?number|e\.?164", re.IGNORECASE)
_PARAMETER_CODES = {"InvalidParameter", "ParameterValueInvalid"}
_BY_STATUS: dict[int, type[ProviderError]] = {401: AuthenticationFailed, 403: AuthenticationFailed}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SMS_TYPE = {Kind.OTP: "Transactional", Kind.TRANSACTIONAL: "Transactional"}


class SnsSettings(ProviderSettings):
    """AWS region and credentials; ``max_price`` caps one SMS's price in USD.

    ``base_url`` defaults to ``https://sns.{region}.amazonaws.com``. ``sender`` (or a
    request's own) becomes the SenderID, or the origination number when it is E.164.
    """

    type: Literal["sns"] = "sns"
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    access_key_id: str = Field(min_length=16)
    secret_access_key: SecretStr
    session_token: SecretStr | None = None
    max_price: Decimal | None = Field(default=None, gt=0)


class SnsProvider(HttpProvider):
    """The ``sns`` provider."""

    type_name: ClassVar[str] = "sns"
    settings_class: ClassVar[type[ProviderSettings]] = SnsSettings
    default_base_url: ClassVar[str] = "https://sns.{region}.amazonaws.com"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, SnsSettings)
        self.config = settings
        self.base_url = self.base_url.format(region=settings.region)
        self.endpoint = self.base_url + "/"
        token = secret(settings.session_token) or None
        self._credentials = Credentials(
            settings.access_key_id, secret(settings.secret_access_key), token
        )

    async def send(self, request: SendRequest) -> SendResult:
        self.check_recipient(request)
        body = urlencode(self.form(request))
        status, headers, answer = await self.request(
            "POST", self.endpoint, data=body.encode(), headers=self.signed_headers(body)
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, answer)
        return self._result(answer)

    def check_recipient(self, request: SendRequest) -> None:
        """Refuse a recipient that is not E.164: SNS's own check is loose."""
        if not _E164.match(request.to):
            raise RecipientRejected(self.name, "not-e164", "the recipient is not an E.164 number")

    def form(self, request: SendRequest) -> list[tuple[str, str]]:
        """The query-protocol fields of the Publish call for ``request``."""
        fields = [
            ("Action", "Publish"),
            ("Version", API_VERSION),
            ("PhoneNumber", request.to),
            ("Message", request.body),
        ]
        for index, (name, data_type, value) in enumerate(self._attributes(request), start=1):
            prefix = f"MessageAttributes.entry.{index}"
            fields += [
                (f"{prefix}.Name", name),
                (f"{prefix}.Value.DataType", data_type),
                (f"{prefix}.Value.StringValue", value),
            ]
        return fields

    def _attributes(self, request: SendRequest) -> list[tuple[str, str, str]]:
        sms_type = _SMS_TYPE.get(request.kind, "Promotional")
        attributes = [("AWS.SNS.SMS.SMSType", "String", sms_type)]
        sender = request.sender or self.config.sender
        if sender and _E164.match(sender):
            attributes.append(("AWS.MM.SMS.OriginationNumber", "String", sender))
        elif sender:
            attributes.append(("AWS.SNS.SMS.SenderID", "String", sender))
        if self.config.max_price is not None:
            attributes.append(("AWS.SNS.SMS.MaxPrice", "Number", str(self.config.max_price)))
        return attributes

    def signed_headers(self, body: str) -> dict[str, str]:
        """The headers of a POST of ``body``, SigV4-signed by botocore."""
        unsigned = AWSRequest(
            "POST", self.endpoint, data=body, headers={"Content-Type": CONTENT_TYPE}
        )
        SigV4Auth(self._credentials, "sns", self.config.region).add_auth(unsigned)
        return {str(k): str(v) for k, v in unsigned.headers.items()}

    def _result(self, answer: bytes) -> SendResult:
        message_id = _find(_xml(answer), "MessageId")
        if not message_id:
            # SNS took the message; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "2xx without a MessageId")
        return SendResult(provider_message_id=message_id)

    def _raise_error(self, status: int, headers: dict[str, str], answer: bytes) -> NoReturn:
        root = _xml(answer)
        code = _find(root, "Code") or f"http-{status}"
        message = self._redact(_find(root, "Message") or f"HTTP {status}")
        error_class = ERRORS.get(code)
        if code in _PARAMETER_CODES and _ABOUT_THE_NUMBER.search(message):
            error_class = RecipientRejected
        if error_class is None or issubclass(error_class, TransientProviderError):
            # Retry-After and the 429/5xx rules are shared by every provider.
            self.raise_for_http_status(_status_for(error_class, status), headers, code, message)
            error_class = _BY_STATUS.get(status, PermanentProviderError)
        raise error_class(self.name, code, message)

    def _redact(self, message: str) -> str:
        return scrub(message)


def _status_for(error_class: type[ProviderError] | None, status: int) -> int:
    if error_class is RateLimited:
        return 429
    if error_class is TransientProviderError:
        return max(status, 500)
    return status


def _xml(answer: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(answer)
    except ET.ParseError:
        return None


def _find(root: ET.Element | None, tag: str) -> str | None:
    # SNS answers in its namespace; match on the local name only.
    if root is None:
        return None
    for element in root.iter():
        if element.tag.rpartition("}")[2] == tag and element.text:
            return element.text.strip()
    return None
