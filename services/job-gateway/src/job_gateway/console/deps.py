"""Who is using the console, and the checks every page relies on.

`ConsoleUserDep` is the signed-in administrator (a live session, its key still valid);
`Protected` (on the pages' router) adds the CSRF check to every request that is not a read.
A page checks roles with `user.require(Access.READ | Access.WRITE, tenant_id)`, the API's
own rule (`domain.refusal`); templates offer an action only where `can_write(tenant_id)`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from ..domain import Access, Administrator, refusal
from ..errors import AdministratorUnauthorized, ConsoleSignInRequired, CrossSiteRequestRefused, Forbidden
from ..use_cases import Services
from .sessions import ConsoleSession, ConsoleSessions

COOKIE = "fleetmail_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ConsoleUser:
    administrator: Administrator
    name: str
    """The key's name (`owner` for the owner key)."""
    session: ConsoleSession

    def can_write(self, tenant_id: str | None = None) -> bool:
        return refusal(self.administrator, Access.WRITE, tenant_id) is None

    def require(self, access: Access, tenant_id: str | None) -> None:
        """`Forbidden` (403) unless this key may do this to this tenant, as in the API."""
        why = refusal(self.administrator, access, tenant_id)
        if why is not None:
            raise Forbidden(why)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_sessions(request: Request) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.sessions
    return sessions


ServicesDep = Annotated[Services, Depends(get_services)]
SessionsDep = Annotated[ConsoleSessions, Depends(get_sessions)]


async def current_user(request: Request, services: ServicesDep, sessions: SessionsDep) -> ConsoleUser:
    session_id = request.cookies.get(COOKIE)
    session = await sessions.find(session_id) if session_id else None
    if session is None:
        raise ConsoleSignInRequired("sign in with an administrator API key")
    try:
        signed_in = await services.administrators.resume(session.key_id, session.key_fingerprint)
    except AdministratorUnauthorized as exc:
        await sessions.delete(session)
        raise ConsoleSignInRequired(exc.detail) from exc
    return ConsoleUser(signed_in.administrator, signed_in.name, session)


ConsoleUserDep = Annotated[ConsoleUser, Depends(current_user)]


def check_origin(request: Request, *, required: bool) -> None:
    """A browser names the page a request comes from (Origin, else Referer): it must be this
    console's own origin. `required`: a request that names none is refused too."""
    named = request.headers.get("origin") or request.headers.get("referer")
    if named is None:
        if required:
            raise CrossSiteRequestRefused("the request does not say which page sent it")
        return
    parts = urlsplit(named)
    if (parts.scheme, parts.netloc) != (request.url.scheme, request.url.netloc):
        raise CrossSiteRequestRefused("the request comes from another site")


async def csrf_protected(request: Request, user: ConsoleUserDep) -> ConsoleUser:
    """The signed-in user; a request that changes something also carries the session's CSRF
    token (form field `csrf_token` or header `X-CSRF-Token`) and comes from this origin."""
    if request.method in SAFE_METHODS:
        return user
    check_origin(request, required=False)
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        field = (await request.form()).get(CSRF_FIELD)
        token = field if isinstance(field, str) else None
    if token is None or not hmac.compare_digest(token.encode(), user.session.csrf_token.encode()):
        raise CrossSiteRequestRefused("the form's CSRF token is missing or out of date: reload the page")
    return user


Protected = Depends(csrf_protected)
