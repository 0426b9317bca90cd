"""The OAuth redirect URI: where a browser lands after an authorization-code sign-in."""

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fleetmail_contracts.tokens import AcquisitionState, CompleteAuthorization
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ...errors import ServiceFailed, TokenServiceUnavailable
from ..deps import ServicesDep

router = APIRouter(tags=["oauth"])

_HTML = {"text/html": {"schema": {"type": "string"}}}


def _page(status: int, title: str, text: str) -> HTMLResponse:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


_PAGE: dict[str, Any] = {
    "response_class": HTMLResponse,
    "summary": "OAuth redirect URI for authorization-code sign-ins",
    "responses": {
        400: {"description": "The sign-in failed, or the answer could not be read", "content": _HTML},
        503: {"description": "token-service did not answer: try again", "content": _HTML},
    },
}


# A GET (query) or a POST (form_post) from the provider: two operations, one page.
@router.get("/oauth/callback", **_PAGE)
@router.post("/oauth/callback", **_PAGE)
async def oauth_callback(request: Request, services: ServicesDep) -> HTMLResponse:
    """A page for the person at the browser, never JSON: signed in, or why not."""
    values = dict(request.query_params)
    if request.method == "POST":
        try:
            form = await request.form()
        except HTTPException:  # a body that is not a form
            return _page(400, "Sign-in failed", "The sign-in answer could not be read.")
        values.update({k: str(v) for k, v in form.items()})
    if "state" not in values:
        return _page(400, "Sign-in failed", "This page is only reached from a sign-in.")
    try:
        answer = CompleteAuthorization(
            state=values["state"][:512],
            code=values.get("code"),
            error=values.get("error"),
            error_description=values.get("error_description"),
        )
    except ValidationError:
        return _page(400, "Sign-in failed", "The sign-in answer could not be read.")
    try:
        status = await services.tokens.complete_authorization(answer)
    except TokenServiceUnavailable:
        return _page(503, "Please try again", "fleetmail could not finish the sign-in just now.")
    except ServiceFailed as exc:
        return _page(502, "Sign-in failed", exc.detail)
    if status.state is AcquisitionState.SUCCEEDED:
        return _page(200, "Signed in", f"{status.detail}. You may close this window.")
    return _page(400, "Sign-in failed", status.detail or "The sign-in did not succeed.")
