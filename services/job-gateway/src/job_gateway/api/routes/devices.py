"""A tenant's devices: registering, listing, changing them, and their secrets."""

from typing import Annotated

from fastapi import APIRouter, Query

from ...errors import (
    AdministratorUnauthorized,
    AllowlistOverlap,
    AllowlistRangeRefused,
    DeviceNotFound,
    Forbidden,
    MachineAddressRefused,
    TenantNotFound,
)
from ...schemas import DeviceChange, DeviceCredentials, DeviceRegistration, DeviceView
from ..deps import ReadableTenant, ServicesDep, TenantWriter, WritableTenant
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants/{tenant_id}/devices",
    tags=["admin"],
    responses=documented(AdministratorUnauthorized, Forbidden),
)


@router.post(
    "", status_code=201, responses=documented(TenantNotFound, AllowlistRangeRefused, AllowlistOverlap)
)
async def register_device(
    registration: DeviceRegistration, tenant: WritableTenant, services: ServicesDep
) -> DeviceCredentials:
    return await services.devices.register(tenant.tenant_id, registration)


@router.get("", responses=documented(TenantNotFound, AllowlistRangeRefused, AllowlistOverlap))
async def list_devices(
    tenant: ReadableTenant,
    services: ServicesDep,
    search: Annotated[
        str | None,
        Query(max_length=200, description="Only devices whose id, name, fax address or a range holds it"),
    ] = None,
) -> list[DeviceView]:
    return await services.devices.in_tenant(tenant, search)


@router.patch(
    "/{device_id}",
    responses=documented(
        TenantNotFound, DeviceNotFound, MachineAddressRefused, AllowlistRangeRefused, AllowlistOverlap
    ),
)
async def change_device(
    device_id: str, change: DeviceChange, tenant: WritableTenant, services: ServicesDep
) -> DeviceView:
    """Disable or enable a device, set its Internet Fax machine address, its SMTP allowlist."""
    return await services.devices.change(tenant, device_id, change)


@router.post("/{device_id}/secret", responses=documented(DeviceNotFound))
async def rotate_device_secret(
    tenant_id: str, device_id: str, _: TenantWriter, services: ServicesDep
) -> DeviceCredentials:
    """A new secret for the device; the old one stops working at once."""
    return await services.devices.rotate_secret(tenant_id, device_id)
