"""API keys: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``, keys from settings.

With no key configured every call is refused: the message endpoints are never open by
accident. Receipts do not use keys; each provider's signature authenticates them.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from smsrelay.api.context import ApiContext, get_context

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="the API key")


async def require_api_key(
    credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    header_key: str | None = Security(api_key_header),
    ctx: ApiContext = Depends(get_context),
) -> None:
    """Refuse with 401 unless the request carries one of the configured keys."""
    given = credentials.credentials if credentials else header_key
    if not given or not is_known(given, ctx.settings.api_keys):
        raise HTTPException(
            401,
            "a valid API key is required (Authorization: Bearer <key>, or X-Api-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def is_known(given: str, keys: list[str]) -> bool:
    """Compare against every key in constant time, without stopping at a match."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found
