"""Tenants: their settings, which job-gateway owns."""

from fastapi import APIRouter
from fleetmail_contracts.tenants import TenantSettings

from ...errors import (
    AdministratorUnauthorized,
    EventBusUnavailable,
    Forbidden,
    IdentityEndpointRefused,
    TenantIdMismatch,
    TenantNotFound,
)
from ..deps import AdminDep, ReadableTenant, ServicesDep, TenantWriter
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants", tags=["admin"], responses=documented(AdministratorUnauthorized, Forbidden)
)


@router.get("")
async def list_tenants(admin: AdminDep, services: ServicesDep) -> list[TenantSettings]:
    """Every tenant this key may see."""
    return await services.tenants.visible_to(admin)


@router.get("/{tenant_id}", responses=documented(TenantNotFound))
async def get_tenant(tenant: ReadableTenant) -> TenantSettings:
    return tenant


@router.put(
    "/{tenant_id}", responses=documented(TenantIdMismatch, IdentityEndpointRefused, EventBusUnavailable)
)
async def put_tenant(
    tenant_id: str, settings_in: TenantSettings, admin: TenantWriter, services: ServicesDep
) -> TenantSettings:
    """Create or replace the tenant's settings (each save is a new `revision`). Identity
    endpoints must be on the operator's allowlist; `mail_domains` are the owner key's to list
    (omitted: the current list is kept)."""
    return await services.tenants.save(tenant_id, settings_in, admin)
