"""The API: every resource's router, joined in one place."""

from fastapi import APIRouter

from .routes import (
    alerts,
    api_keys,
    credentials,
    dead_letters,
    device_portal,
    devices,
    health,
    jobs,
    oauth,
    overview,
    tenants,
    tokens,
    tsi_routing,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(overview.router)
api_router.include_router(tenants.router)
api_router.include_router(credentials.router)
api_router.include_router(tsi_routing.router)
api_router.include_router(devices.router)
api_router.include_router(api_keys.router)
api_router.include_router(jobs.admin)
api_router.include_router(dead_letters.router)
api_router.include_router(alerts.router)
api_router.include_router(tokens.router)
api_router.include_router(oauth.router)
api_router.include_router(jobs.devices)
api_router.include_router(device_portal.router)
