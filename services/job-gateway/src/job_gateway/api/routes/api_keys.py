"""Administrators' API keys: the owner key's alone to manage."""

from fastapi import APIRouter, Depends

from ...errors import AdministratorUnauthorized, Forbidden, TenantsRequired
from ...schemas import ApiKeyDeleted, ApiKeyRequest, ApiKeyView
from ..deps import ServicesDep, owner
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/api-keys",
    tags=["admin"],
    dependencies=[Depends(owner)],
    responses=documented(AdministratorUnauthorized, Forbidden),
)


@router.post("", status_code=201, responses=documented(TenantsRequired))
async def create_api_key(request_in: ApiKeyRequest, services: ServicesDep) -> ApiKeyView:
    """A key for a fleet administrator (read and change its tenants) or an operator (read)."""
    return await services.administrators.create(request_in)


@router.get("")
async def list_api_keys(services: ServicesDep) -> list[ApiKeyView]:
    return await services.administrators.all()


@router.delete("/{key_id}")
async def delete_api_key(key_id: str, services: ServicesDep) -> ApiKeyDeleted:
    return ApiKeyDeleted(deleted=await services.administrators.delete(key_id))
