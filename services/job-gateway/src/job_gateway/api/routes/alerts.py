"""A tenant's alerts for administrators, kept by the notifier."""

from fastapi import APIRouter
from fleetmail_contracts.alerts import AlertView

from ...errors import AdministratorUnauthorized, AlertNotFound, Forbidden, NotifierUnavailable, TenantNotFound
from ..deps import ReadableTenant, ServicesDep, TenantWriter
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants/{tenant_id}/alerts",
    tags=["admin"],
    responses=documented(AdministratorUnauthorized, Forbidden, NotifierUnavailable),
)


@router.get("", responses=documented(TenantNotFound))
async def list_alerts(
    tenant: ReadableTenant, services: ServicesDep, include_resolved: bool = False
) -> list[AlertView]:
    """The tenant's alerts for administrators (dead or expiring grants, SMTP AUTH off, …)."""
    return await services.alerts.for_administrators(tenant.tenant_id, include_resolved)


@router.post("/{alert_id}/acknowledge", responses=documented(AlertNotFound))
async def acknowledge_alert(
    tenant_id: str, alert_id: str, admin: TenantWriter, services: ServicesDep
) -> AlertView:
    return await services.alerts.acknowledge(tenant_id, alert_id, by=admin.key_id)
