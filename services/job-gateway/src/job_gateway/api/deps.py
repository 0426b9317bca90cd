"""Typed dependencies: the services, and who is calling.

Who may call a route is one of these, at the head of its router or in its signature:
`DeviceDep` (a device, HTTP Basic with its id and secret), `AdminDep` (any administrator
key), `OwnerDep` (the owner key), and for a tenant's routes `TenantReader` / `TenantWriter`
(the key reaches that tenant, to read or to change it) or `ReadableTenant` /
`WritableTenant` (the same, and the tenant exists: its settings).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from fleetmail_contracts.tenants import TenantSettings

from ..domain import Access, Administrator, Device, refusal
from ..errors import AdministratorUnauthorized, DeviceUnauthorized, Forbidden
from ..use_cases import Services

_basic = HTTPBasic(auto_error=False, description="A device: its id and secret")
_bearer = HTTPBearer(auto_error=False, description="An administrator's API key")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_device(
    services: ServicesDep, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]
) -> Device:
    if credentials is None:
        raise DeviceUnauthorized("send the device id and secret with HTTP Basic authentication")
    return (await services.devices.authenticate(credentials.username, credentials.password)).device


DeviceDep = Annotated[Device, Depends(current_device)]


async def current_administrator(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Administrator:
    if credentials is None:
        raise AdministratorUnauthorized("send an administrator API key as a bearer token")
    return await services.administrators.authenticate(credentials.credentials)


AdminDep = Annotated[Administrator, Depends(current_administrator)]


def _allowed(admin: Administrator, access: Access, tenant_id: str | None) -> Administrator:
    why = refusal(admin, access, tenant_id)
    if why is not None:
        raise Forbidden(why)
    return admin


def owner(admin: AdminDep) -> Administrator:
    return _allowed(admin, Access.MANAGE_KEYS, None)


def tenant_reader(admin: AdminDep, tenant_id: str) -> Administrator:
    return _allowed(admin, Access.READ, tenant_id)


def tenant_writer(admin: AdminDep, tenant_id: str) -> Administrator:
    return _allowed(admin, Access.WRITE, tenant_id)


OwnerDep = Annotated[Administrator, Depends(owner)]
TenantReader = Annotated[Administrator, Depends(tenant_reader)]
TenantWriter = Annotated[Administrator, Depends(tenant_writer)]


async def readable_tenant(_: TenantReader, services: ServicesDep, tenant_id: str) -> TenantSettings:
    return await services.tenants.get(tenant_id)


async def writable_tenant(_: TenantWriter, services: ServicesDep, tenant_id: str) -> TenantSettings:
    return await services.tenants.get(tenant_id)


ReadableTenant = Annotated[TenantSettings, Depends(readable_tenant)]
WritableTenant = Annotated[TenantSettings, Depends(writable_tenant)]
