"""A tenant's tokens: the administrator's sign-in (Acquire), acquisitions, grants, and the
[Delete] of a user's refresh token, or of every user's. token-service does the work."""

from fastapi import APIRouter
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionStarted,
    AcquisitionStatus,
    DeleteGrantReply,
    DeleteUserGrantsReply,
)

from ...domain import token_status
from ...errors import (
    AcquisitionRefused,
    AdministratorUnauthorized,
    Forbidden,
    InvalidAddress,
    NoAdministratorAddress,
    OutsideTenantDomains,
    ServiceFailed,
    TenantNotFound,
    TokenServiceUnavailable,
)
from ...schemas import TokenStatus
from ..deps import ReadableTenant, ServicesDep, TenantReader, WritableTenant
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants/{tenant_id}",
    tags=["admin"],
    responses=documented(AdministratorUnauthorized, Forbidden, TokenServiceUnavailable, ServiceFailed),
)


@router.post(
    "/tokens/administrator/acquire",
    responses=documented(TenantNotFound, NoAdministratorAddress, OutsideTenantDomains, AcquisitionRefused),
)
async def acquire_administrator(
    tenant: WritableTenant, services: ServicesDep, flow: AcquisitionFlow | None = None
) -> AcquisitionStarted:
    """Start the administrator's sign-in: a device code (Microsoft's default) or a browser
    sign-in (`flow=authorization_code`, the only one Google allows for Gmail); app-only
    when the tenant sends app-only."""
    return await services.tokens.start_administrator_sign_in(tenant, flow)


@router.get("/acquisitions/{acquisition_id}")
async def acquisition_status(
    tenant_id: str, acquisition_id: str, _: TenantReader, services: ServicesDep
) -> AcquisitionStatus:
    return await services.tokens.acquisition_status(tenant_id, acquisition_id)


@router.get("/tokens", responses=documented(TenantNotFound))
async def tokens_of_tenant(tenant: ReadableTenant, services: ServicesDep) -> TokenStatus:
    """The device's [Refresh Tokens] screen: the administrator's row ("not_acquired" until
    [Acquire] succeeded for the address set now) and every grant, never a token."""
    return token_status(tenant, (await services.tokens.grants(tenant.tenant_id)).grants)


@router.delete("/tokens/users", responses=documented(TenantNotFound))
async def delete_all_user_tokens(tenant: WritableTenant, services: ServicesDep) -> DeleteUserGrantsReply:
    """The [Delete] of Refresh Tokens (User) for every login user of the tenant at once, as
    the device deletes all its users' tokens; the administrator's token stays. `deleted`: how
    many there were."""
    return await services.tokens.delete_user_grants(tenant.tenant_id)


@router.delete("/tokens/users/{address}", responses=documented(TenantNotFound, InvalidAddress))
async def delete_user_token(address: str, tenant: WritableTenant, services: ServicesDep) -> DeleteGrantReply:
    """The [Delete] of Refresh Tokens (User): the user signs in again next time."""
    return await services.tokens.delete_user_grant(tenant.tenant_id, address)
