"""A tenant's TSI routing table: where received faxes go by their sender's TSI."""

from typing import Annotated

from fastapi import APIRouter, Path

from ...errors import (
    AdministratorUnauthorized,
    Conflict,
    Forbidden,
    InvalidAddress,
    TenantNotFound,
    TooManyRecipients,
    TsiRouteNotFound,
)
from ...schemas import TsiRecipients, TsiRoutingTable
from ..deps import ReadableTenant, ServicesDep, WritableTenant
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants/{tenant_id}/tsi-routing",
    tags=["admin"],
    responses=documented(AdministratorUnauthorized, Forbidden, TenantNotFound),
)

Tsi = Annotated[str, Path(min_length=1, max_length=64, description="The sender's TSI")]
EDIT_REFUSALS = documented(InvalidAddress, TooManyRecipients, Conflict)


@router.get("")
async def get_tsi_routing(tenant: ReadableTenant, services: ServicesDep) -> TsiRoutingTable:
    """The tenant's table (empty until one is saved)."""
    return await services.tsi_routing.table(tenant.tenant_id)


@router.put("", responses=EDIT_REFUSALS)
async def put_tsi_routing(
    table_in: TsiRoutingTable, tenant: WritableTenant, services: ServicesDep
) -> TsiRoutingTable:
    """Replace the whole table: its routes and its default."""
    return await services.tsi_routing.replace(tenant.tenant_id, table_in)


@router.put("/routes/{tsi:path}", responses=EDIT_REFUSALS)
async def put_tsi_route(
    tsi: Tsi, recipients_in: TsiRecipients, tenant: WritableTenant, services: ServicesDep
) -> TsiRoutingTable:
    """Add the TSI's route or replace its recipients; answers the whole table."""
    return await services.tsi_routing.set_route(tenant.tenant_id, tsi, recipients_in.recipients)


@router.delete("/routes/{tsi:path}", responses=documented(TsiRouteNotFound, Conflict))
async def delete_tsi_route(tsi: Tsi, tenant: WritableTenant, services: ServicesDep) -> TsiRoutingTable:
    """Remove the TSI's route; answers the whole table."""
    return await services.tsi_routing.remove_route(tenant.tenant_id, tsi)
