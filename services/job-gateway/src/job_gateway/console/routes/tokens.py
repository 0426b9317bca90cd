"""[Refresh Tokens (Administrator)] with [Acquire], and [Refresh Tokens (User)] with [Delete],
through the API's use cases (`TokenRelay`). An acquisition's status is a fragment that htmx
asks for every two seconds until it is final, so the page turns to "Acquired" by itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from fleetmail_contracts.credentials import CredentialsView
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AcquisitionState, GrantView, PrincipalKind

from ...domain import Access, token_status
from ...errors import Conflict, OutsideTenantDomains, ServiceFailed, Unavailable
from ...schemas import TokenStatus, TransportReadiness
from ...use_cases import Services
from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(prefix="/tenants/{tenant_id}", dependencies=[Protected])

EXPIRING_WITHIN = timedelta(days=14)
"""An acquired administrator token whose predicted death is nearer than this is "Expiring"
(the fleet overview's default horizon)."""

STATE_WORDS = {
    "not_acquired": "Not acquired",
    "acquired": "Acquired",
    "reauthorization_required": "Re-authorization needed",
    "revoked": "Re-authorization needed",
}


def fragment_status(request: Request, status_code: int) -> int:
    """A refusal in a fragment htmx swaps in is sent as 200 (htmx shows no other answer);
    any other client gets the status."""
    return 200 if request.headers.get("HX-Request") == "true" else status_code


@dataclass(frozen=True)
class AdministratorState:
    key: str
    """acquired, expiring, not_acquired, reauthorization_required (a CSS class, a test's hook)."""
    words: str


def administrator_state(status: TokenStatus, now: datetime) -> AdministratorState:
    """The administrator token in the overview's words: Acquired / Not acquired /
    Re-authorization needed / Expiring on <date>, N days left."""
    key = status.administrator.status
    if key == "revoked":
        key = "reauthorization_required"
    if key == "acquired":
        address = (status.administrator.address or "").casefold()
        death = next(
            (
                g.predicted_death_at
                for g in status.grants
                if g.principal.kind is PrincipalKind.ADMINISTRATOR
                and g.principal.address.casefold() == address
            ),
            None,
        )
        if death is not None and death - now <= EXPIRING_WITHIN:
            day: date = death.astimezone(UTC).date()
            left = max(0, (death - now) // timedelta(days=1))
            return AdministratorState("expiring", f"Expiring on {day.isoformat()}, {left} days left")
    return AdministratorState(key, STATE_WORDS[key])


@dataclass(frozen=True)
class TokenPanel:
    administrator: AdministratorState | None
    users: list[GrantView]
    credentials: CredentialsView | None
    unavailable: str | None
    """Why token-service's part of the page is missing (it did not answer), or None."""
    transport: TransportReadiness | None = None
    """Whether the administrator's grant has what the tenant's transport needs."""


async def token_panel(services: Services, tenant: TenantSettings) -> TokenPanel:
    """The tenant's tokens and what credentials are set, as the API's routes read them."""
    try:
        status = token_status(tenant, (await services.tokens.grants(tenant.tenant_id)).grants)
        credentials = await services.tokens.credentials(tenant.tenant_id)
    except Unavailable as exc:
        return TokenPanel(None, [], None, exc.detail)
    users = [g for g in status.grants if g.principal.kind is PrincipalKind.USER]
    return TokenPanel(
        administrator_state(status, datetime.now(UTC)), users, credentials, None, status.transport
    )


@router.post("/tokens/administrator/acquire", name="tenant_acquire")
async def acquire(request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep) -> Response:
    """[Acquire]: the code and the address to enter it at (or the sign-in link), and the
    status, which follows by itself."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.get(tenant_id)
    try:
        started = await services.tokens.start_administrator_sign_in(tenant, None)
    except (Conflict, OutsideTenantDomains, Unavailable, ServiceFailed) as exc:
        # No address, one outside the domains, refused; or token-service not answering: said
        # where the code would be (htmx shows no error page).
        status = 409 if isinstance(exc, Conflict | OutsideTenantDomains) else 503
        return render(
            request,
            "tenant/acquisition.html",
            user,
            fragment_status(request, status),
            tenant=tenant,
            error=exc.detail,
        )
    return render(request, "tenant/acquisition.html", user, tenant=tenant, started=started)


@router.get("/acquisitions/{acquisition_id}", name="tenant_acquisition")
async def acquisition(
    request: Request, tenant_id: str, acquisition_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """The acquisition's status; once it succeeded, the administrator's row too (out of band)."""
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    status = await services.tokens.acquisition_status(tenant_id, acquisition_id)
    done = status.state is AcquisitionState.SUCCEEDED
    return render(
        request,
        "tenant/acquisition_status.html",
        user,
        tenant=tenant,
        status=status,
        tokens=await token_panel(services, tenant) if done else None,
    )


@router.post("/tokens/users/delete", name="tenant_delete_user_token")
async def delete_user_token(
    request: Request,
    tenant_id: str,
    address: Annotated[str, Form()],
    user: ConsoleUserDep,
    services: ServicesDep,
) -> Response:
    """[Delete] of one user's refresh token: the user signs in again at the device."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.get(tenant_id)
    await services.tokens.delete_user_grant(tenant.tenant_id, address)
    return RedirectResponse(request.url_for("tenant", tenant_id=tenant_id), status_code=303)


@router.post("/tokens/users/delete-all", name="tenant_delete_user_tokens")
async def delete_user_tokens(
    request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """[Delete] of every user's refresh token (the administrator's stays)."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.get(tenant_id)
    await services.tokens.delete_user_grants(tenant.tenant_id)
    return RedirectResponse(request.url_for("tenant", tenant_id=tenant_id), status_code=303)
