"""A tenant's page (a placeholder: its id and OAuth 2.0 ON/OFF, which a writer may switch)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ...domain import Access
from ...errors import InvalidRequest
from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(prefix="/tenants/{tenant_id}", dependencies=[Protected])


@router.get("", name="tenant")
async def tenant_page(
    request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    return render(request, "tenant.html", user, tenant=tenant)


@router.post("/oauth", name="tenant_oauth")
async def switch_oauth(
    request: Request,
    tenant_id: str,
    oauth: Annotated[Literal["on", "off"], Form()],
    user: ConsoleUserDep,
    services: ServicesDep,
) -> Response:
    """OAuth 2.0 ON/OFF, saved by the same use case as the API's settings update."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.get(tenant_id)
    try:
        await services.tenants.save(
            tenant_id, tenant.model_copy(update={"oauth_enabled": oauth == "on"}), user.administrator
        )
    except InvalidRequest as exc:
        return render(request, "tenant.html", user, 422, tenant=tenant, error=exc.detail)
    return RedirectResponse(request.url_for("tenant", tenant_id=tenant_id), status_code=303)
