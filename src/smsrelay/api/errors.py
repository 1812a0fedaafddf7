"""One error body for every refusal: ``{"error": {"reason": ..., "field": ...}}``.

FastAPI's own errors (unknown route, wrong method, bad path parameter) are rewritten
into the same shape, so a client reads one format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

# InvalidRequest reasons name the field like this (see smsrelay.models._describe).
_FIELD = re.compile(r'^(?:unknown )?field "([^"]+)"')


class ErrorDetail(BaseModel):
    """Why the request was refused; ``field`` names the offending request field."""

    reason: str
    field: str | None = None


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


def error_response(
    status: int,
    reason: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer."""
    body = ErrorBody(error=ErrorDetail(reason=reason, field=field))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def field_of(reason: str) -> str | None:
    """The field an ``InvalidRequest`` reason names, if any."""
    match = _FIELD.match(reason)
    return match.group(1) if match else None


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with ``ErrorBody``."""
    return {status: {"model": ErrorBody} for status in statuses}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ())]
    field = loc[-1] if loc else None
    return error_response(422, str(first.get("msg", "invalid request")), field=field)


def install(app: FastAPI) -> None:
    """Route FastAPI's and Starlette's errors through ``error_response``."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
