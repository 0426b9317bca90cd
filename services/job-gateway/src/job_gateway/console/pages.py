"""Rendering: the templates (autoescaped), the headers every page carries, and the error tree
as HTML pages (the API's problem+json statuses, a page a person reads)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..api.problems import status_of
from ..errors import ConsoleSignInRequired, GatewayError
from .deps import COOKIE, ConsoleUser

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

# Everything the console loads is its own (closed networks, no CDN): no inline script, no
# other origin, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def render(
    request: Request, template: str, user: ConsoleUser | None, status_code: int = 200, **context: Any
) -> Response:
    """The page, with the signed-in user, the CSRF token its forms carry, and `can_write`."""
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "csrf_token": user.session.csrf_token if user is not None else None,
            "can_write": user.can_write if user is not None else (lambda tenant_id=None: False),
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def sign_in_again(request: Request) -> Response:
    """To the sign-in form, the stale cookie dropped (htmx follows `HX-Redirect`)."""
    target = str(request.url_for("sign_in_form"))
    response: Response
    if request.headers.get("HX-Request") == "true":
        response = Response(status_code=401, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if isinstance(exc, ConsoleSignInRequired):
        return sign_in_again(request)
    return render(request, "error.html", None, status_of(type(exc)), title=exc.title, detail=exc.detail)


async def _on_invalid_form(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
    return render(request, "error.html", None, 422, title="The form is not complete", detail=fields)


async def _on_invalid_value(request: Request, exc: Exception) -> Response:
    """A value a use case's model refused (the API's 422): a page, never a bare 500."""
    assert isinstance(exc, ValidationError)
    fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    return render(request, "error.html", None, 422, title="A value was not accepted", detail=fields)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: logged with its trace, and a page that says so without one."""
    log.exception("console page %s %s failed", request.method, request.url.path, exc_info=exc)
    return render(
        request,
        "error.html",
        None,
        500,
        title="Something went wrong",
        detail="fleetmail could not show this page; nothing was changed by the failure itself. "
        "Try again; if it persists, the gateway's log has the details.",
    )


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = HTTPStatus(exc.status_code).phrase
    return render(request, "error.html", None, exc.status_code, title=title, detail=str(exc.detail))


def install_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_form)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(ValidationError, _on_invalid_value)
    app.add_exception_handler(Exception, _on_unexpected)
