"""A tenant's [Information]: its alerts for administrators as the devices' screen shows them
(what happened, what to do, since when), acknowledge, and the resolved ones as history. The
notifier keeps them; the page asks through the API's use case (`AlertRelay`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fleetmail_contracts.alerts import AlertSeverity, AlertState

from ...domain import Access
from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(prefix="/tenants/{tenant_id}", dependencies=[Protected])

SEVERITY_ORDER = {AlertSeverity.CRITICAL: 0, AlertSeverity.WARNING: 1, AlertSeverity.INFO: 2}


@router.get("/information", name="tenant_information")
async def information(
    request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    alerts = await services.alerts.for_administrators(tenant_id, include_resolved=True)
    current = sorted(
        (a for a in alerts if a.state is not AlertState.RESOLVED),
        key=lambda a: (SEVERITY_ORDER[a.severity], a.raised_at),
    )
    history = sorted(
        (a for a in alerts if a.state is AlertState.RESOLVED),
        key=lambda a: a.resolved_at or a.last_seen_at,
        reverse=True,
    )
    return render(request, "information.html", user, tenant=tenant, current=current, history=history)


@router.post("/alerts/{alert_id}/acknowledge", name="tenant_acknowledge")
async def acknowledge(
    request: Request, tenant_id: str, alert_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """Seen: the alert stays until what caused it is over, marked as acknowledged."""
    user.require(Access.WRITE, tenant_id)
    await services.tenants.get(tenant_id)
    await services.alerts.acknowledge(tenant_id, alert_id, by=user.administrator.key_id)
    return RedirectResponse(request.url_for("tenant_information", tenant_id=tenant_id), status_code=303)
