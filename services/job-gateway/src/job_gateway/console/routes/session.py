"""Sign-in and sign-out.

The sign-in form is checked by origin, not by a token: the browser names the page a POST comes
from (Origin, else Referer), and a sign-in that does not come from this console's own form is
refused, so another site cannot sign a browser in under its key (login CSRF). The session
cookie is SameSite=Strict besides, and every later form carries the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ...errors import AdministratorUnauthorized
from ..deps import COOKIE, ConsoleUserDep, Protected, ServicesDep, SessionsDep, check_origin
from ..pages import render

router = APIRouter()


@router.get("/sign-in", name="sign_in_form")
async def sign_in_form(request: Request) -> Response:
    return render(request, "sign_in.html", None)


@router.post("/sign-in", name="sign_in")
async def sign_in(
    request: Request, api_key: Annotated[str, Form()], services: ServicesDep, sessions: SessionsDep
) -> Response:
    check_origin(request, required=True)
    try:
        signed_in = await services.administrators.sign_in(api_key.strip())
    except AdministratorUnauthorized:
        return render(
            request, "sign_in.html", None, 401, error="That key was not accepted: check it and try again."
        )
    # A session this browser already had ends: one browser, one session.
    if (previous_id := request.cookies.get(COOKIE)) and (previous := await sessions.find(previous_id)):
        await sessions.delete(previous)
    session_id, _ = await sessions.create(signed_in.administrator.key_id, signed_in.fingerprint)
    response = RedirectResponse(request.url_for("overview"), status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(sessions.ttl.total_seconds()),
        path="/console",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out", name="sign_out", dependencies=[Protected])
async def sign_out(request: Request, user: ConsoleUserDep, sessions: SessionsDep) -> Response:
    await sessions.delete(user.session)
    response = RedirectResponse(request.url_for("sign_in_form"), status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response
