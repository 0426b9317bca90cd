"""A tenant's secrets (provider app credentials, the SMTP password), kept by token-service."""

from fastapi import APIRouter
from fleetmail_contracts.credentials import CredentialsView

from ...errors import (
    AdministratorUnauthorized,
    CredentialsRefused,
    Forbidden,
    ServiceFailed,
    TenantNotFound,
    TokenServiceUnavailable,
)
from ...schemas import CredentialsInput
from ..deps import ReadableTenant, ServicesDep, WritableTenant
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants/{tenant_id}/credentials",
    tags=["admin"],
    responses=documented(
        AdministratorUnauthorized, Forbidden, TenantNotFound, TokenServiceUnavailable, ServiceFailed
    ),
)


@router.put("", responses=documented(CredentialsRefused))
async def put_credentials(
    credentials_in: CredentialsInput, tenant: WritableTenant, services: ServicesDep
) -> CredentialsView:
    """Provider app credentials (app-only sending) and the SMTP password (OAuth 2.0 off),
    stored encrypted by token-service. The answer says what is set, never the secrets."""
    return await services.tokens.set_credentials(tenant.tenant_id, credentials_in)


@router.get("")
async def get_credentials(tenant: ReadableTenant, services: ServicesDep) -> CredentialsView:
    return await services.tokens.credentials(tenant.tenant_id)
