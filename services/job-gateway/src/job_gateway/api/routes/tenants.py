"""Tenants: their settings, which job-gateway owns."""

from fastapi import APIRouter
from fleetmail_contracts.tenants import TenantSettings

from ...errors import (
    AdministratorAddressRequired,
    AdministratorUnauthorized,
    EventBusUnavailable,
    Forbidden,
    IdentityEndpointRefused,
    InvalidAddress,
    OutboundDestinationRefused,
    TenantIdMismatch,
    TenantNotFound,
)
from ..deps import AdminDep, ServicesDep, TenantReader, TenantWriter
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants", tags=["admin"], responses=documented(AdministratorUnauthorized, Forbidden)
)


@router.get("")
async def list_tenants(admin: AdminDep, services: ServicesDep) -> list[TenantSettings]:
    """Every tenant this key may see."""
    return await services.tenants.visible_to(admin)


@router.get("/{tenant_id}", responses=documented(TenantNotFound))
async def get_tenant(tenant_id: str, admin: TenantReader, services: ServicesDep) -> TenantSettings:
    """The tenant's settings (a read-only operator key sees the proxy URL without credentials)."""
    return await services.tenants.read(admin, tenant_id)


@router.put(
    "/{tenant_id}",
    responses=documented(
        TenantIdMismatch,
        AdministratorAddressRequired,
        IdentityEndpointRefused,
        OutboundDestinationRefused,
        InvalidAddress,
        EventBusUnavailable,
    ),
)
async def put_tenant(
    tenant_id: str, settings_in: TenantSettings, admin: TenantWriter, services: ServicesDep
) -> TenantSettings:
    """Create or replace the tenant's settings (each save is a new `revision`). Identity
    endpoints must be on the operator's allowlist; webhooks, the SMTP server and the proxy may
    not be special-purpose addresses outside the operator's allowed ranges; each alert
    recipient is one plain address; `mail_domains` are the owner key's to list (omitted: the
    current list is kept); OAuth 2.0 is on only with the administrator's address."""
    return await services.tenants.save(tenant_id, settings_in, admin)
