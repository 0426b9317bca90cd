"""The HTTP edge of the error tree: each error class as RFC 9457 problem details.

One table gives each class of `errors` its status; the problem's `type` is
`https://fleetmail.dev/problems/<code>`; transient errors carry `Retry-After`, failed
authentication `WWW-Authenticate`. FastAPI's own refusals (a request that does not match
the schema, a body that cannot be parsed, an unknown path) come back in the same shape.
`documented(...)` writes the same table into the OpenAPI document, so what a route can
answer is what its operation says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..errors import (
    AdministratorUnauthorized,
    AttachmentTooLarge,
    AttachmentTypeRefused,
    BodyReadTimeout,
    Conflict,
    DeviceUnauthorized,
    DocumentsGone,
    Failed,
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    OutsideTenantDomains,
    RateLimited,
    SignInHereRequired,
    SubmissionTooLarge,
    TooManyBytesInFlight,
    Transient,
    Unauthorized,
    Unavailable,
    UnreadableRequest,
)
from ..schemas import summarise

T = TypeVar("T")

PROBLEM_BASE = "https://fleetmail.dev/problems/"
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"

STATUSES: dict[type[GatewayError], int] = {
    UnreadableRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    OutsideTenantDomains: 403,
    SignInHereRequired: 403,
    NotFound: 404,
    Conflict: 409,
    DocumentsGone: 410,
    AttachmentTooLarge: 413,
    SubmissionTooLarge: 413,
    AttachmentTypeRefused: 415,
    InvalidRequest: 422,
    BodyReadTimeout: 408,
    RateLimited: 429,
    Failed: 502,
    Unavailable: 503,
    TooManyBytesInFlight: 507,
}
CHALLENGES: dict[type[GatewayError], str] = {
    DeviceUnauthorized: 'Basic realm="fleetmail devices"',
    AdministratorUnauthorized: 'Bearer realm="fleetmail admin"',
}


def _nearest(table: Mapping[type[GatewayError], T], cls: type[GatewayError]) -> T | None:
    """The entry of the class or of its nearest ancestor in the table."""
    return next((table[c] for c in cls.__mro__ if c in table), None)


def status_of(cls: type[GatewayError]) -> int:
    return _nearest(STATUSES, cls) or 500


def headers_of(error: GatewayError) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if isinstance(error, Transient):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, BodyReadTimeout):
        headers["Connection"] = "close"  # the rest of the body is not waited for
    challenge = _nearest(CHALLENGES, type(error))
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    return headers or None


def problem(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "type": PROBLEM_BASE + code,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": request.url.path,
        },
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def error_response(request: Request, error: GatewayError) -> JSONResponse:
    return problem(request, status_of(type(error)), error.code, error.title, error.detail, headers_of(error))


async def _on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_response(request, exc)


async def _on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    return error_response(request, InvalidRequest(summarise(exc.errors())))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own: an unparseable body (400), an unknown path (404)…"""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        return error_response(request, UnreadableRequest(str(exc.detail)))
    phrase = HTTPStatus(exc.status_code).phrase
    code = phrase.lower().replace(" ", "-").replace("'", "")
    return problem(request, exc.status_code, code, phrase, str(exc.detail), exc.headers)


def install(app: FastAPI) -> None:
    """Answer every error of the tree, and FastAPI's own, as problem+json."""
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(ValidationError, _on_invalid_request)
    app.add_exception_handler(HTTPException, _on_http_exception)


def documented(*errors: type[GatewayError]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of routes that can raise these errors (merged by status)."""
    by_status: dict[int, list[type[GatewayError]]] = {}
    for cls in errors:
        by_status.setdefault(status_of(cls), []).append(cls)
    if 422 in by_status:  # a route that refuses a field also refuses a request off its schema
        by_status[422].append(InvalidRequest)
    return {status: _response(classes) for status, classes in sorted(by_status.items())}


def _response(classes: Sequence[type[GatewayError]]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": "; ".join(dict.fromkeys(f"{c.title} ({c.code})" for c in classes)),
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    headers: dict[str, Any] = {}
    if any(issubclass(c, Transient) for c in classes):
        headers["Retry-After"] = {
            "description": "Seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    if any(_nearest(CHALLENGES, c) is not None for c in classes):
        headers["WWW-Authenticate"] = {
            "description": "How to authenticate",
            "required": True,
            "schema": {"type": "string"},
        }
    if headers:
        response["headers"] = headers
    return response


def validation_failed() -> dict[str, Any]:
    """The 422 of a request that does not match the operation's parameters or body."""
    return _response([InvalidRequest])
