"""The landing page: the tenants this key may see."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(dependencies=[Protected])


@router.get("/", name="overview")
async def overview(request: Request, user: ConsoleUserDep, services: ServicesDep) -> Response:
    tenants = await services.tenants.visible_to(user.administrator)
    return render(request, "overview.html", user, tenants=tenants)
