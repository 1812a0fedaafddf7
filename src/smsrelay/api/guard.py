"""``GET /v1/guard/blocks``: the prefixes the pumping guard blocks, as ``smsrelay guard list``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from smsrelay.api.auth import require_api_key
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response

router = APIRouter(tags=["guard"], dependencies=[Depends(require_api_key)])


class GuardBlock(BaseModel):
    """One blocked prefix: the rule and figure that blocked it, until when, which repeat."""

    prefix: str
    rule: str
    detail: str
    until: datetime
    strikes: int


class GuardBlocks(BaseModel):
    """The guard's mode and the blocks in force."""

    mode: str
    blocks: list[GuardBlock]


@router.get("/v1/guard/blocks", response_model=GuardBlocks, responses=documented(401, 503))
async def guard_blocks(ctx: ApiContext = Depends(get_context)) -> Any:
    """The blocked prefixes (shared through Redis: the API needs ``redis_url``)."""
    if ctx.guard is None:
        mode = ctx.settings.guard.mode
        if mode == "off":
            return GuardBlocks(mode=mode, blocks=[])
        return error_response(503, "the guard's blocks are shared through Redis: set redis_url")
    mode = ctx.guard.settings.mode
    blocks = [
        GuardBlock(
            prefix=b.prefix,
            rule=f"guard-{b.rule}",
            detail=b.detail,
            until=datetime.fromtimestamp(b.until, UTC),
            strikes=b.strikes,
        )
        for b in await ctx.guard.blocks()
    ]
    return GuardBlocks(mode=mode, blocks=blocks)
