"""The fleet overview: every tenant the key sees on one page, with the figures that say
whether it needs an administrator."""

from typing import Annotated

from fastapi import APIRouter, Query

from ...errors import (
    AdministratorUnauthorized,
    InvalidRequest,
    NotifierUnavailable,
    ServiceFailed,
    TokenServiceUnavailable,
)
from ...schemas import OverviewPage, OverviewTokenState
from ...use_cases import OverviewSort
from ...use_cases.overview import overview_query
from ..deps import AdminDep, ServicesDep
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/overview",
    tags=["admin"],
    responses=documented(
        AdministratorUnauthorized, TokenServiceUnavailable, NotifierUnavailable, ServiceFailed
    ),
)


@router.get("", responses=documented(InvalidRequest))
async def fleet_overview(
    admin: AdminDep,
    services: ServicesDep,
    sort: OverviewSort = OverviewSort.TENANT,
    order: Annotated[
        str | None,
        Query(
            pattern="^(asc|desc)$",
            description="none: the sort's natural order (tenants A to Z, the worst token and the "
            "fewest days left first, the largest figures first)",
        ),
    ] = None,
    token_state: Annotated[
        list[OverviewTokenState] | None, Query(description="Only these token states (repeat for several)")
    ] = None,
    q: Annotated[str | None, Query(max_length=100, description="Text in the tenant's id or name")] = None,
    needs_attention: bool | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[
        int | None,
        Query(ge=1, le=1000, description="Tenants a page; none: FLEETMAIL_GATEWAY_OVERVIEW_PAGE_SIZE"),
    ] = None,
) -> OverviewPage:
    """Every tenant this key sees (the owner and an operator given no tenants: all; a fleet
    administrator: its own), one row each: OAuth 2.0, provider, the administrator token's
    state and days left, unresolved alerts by severity, users to sign in, jobs failed and
    dead-lettered in the last 24 hours, devices and unfinished jobs. Sorted, filtered and
    paged as asked; `totals` counts every tenant the key sees, whatever the filter."""
    query = overview_query(sort, order, token_state or (), q, needs_attention, page, limit)
    return await services.overview.page(admin, query)
