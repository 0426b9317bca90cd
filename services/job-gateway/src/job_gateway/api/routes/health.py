"""Probes: alive, and ready to take jobs (the bus connected)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...schemas import Health, Readiness
from ..deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: the bus is not connected"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    readiness = Readiness(ready=services.bus_connected(), smtp_min_tls=services.smtp_min_tls)
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)
