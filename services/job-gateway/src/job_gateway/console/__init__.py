"""The administrator's console: server-rendered pages under `/console`, on the same use cases
as the API (`Services`), signed in by API key into a server-side session.

`build_console` makes the console's own FastAPI app (its own error pages: HTML, not
problem+json), which `app.build_app` mounts at `/console`. How a page is added: README.md here.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..use_cases import Services
from .pages import HERE, install_error_pages
from .routes import dead_letters, devices, information, jobs, overview, session, tenants, tokens
from .sessions import ConsoleSessions

FORM_BYTES = 256 * 1024
"""The most a console request may carry: the largest form (a tenant's settings, a Google
service-account key) is a few kB."""


def build_console(services: Services, sessions: ConsoleSessions) -> FastAPI:
    # Forms are read before a route's own checks (sign-in's origin, the session): small and
    # file-free, so nobody fills the gateway's memory or disk through a console form.
    console = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        max_body_size=FORM_BYTES,
        form_limits={"max_files": 0, "max_fields": 200, "max_part_size": 64 * 1024},
    )
    console.state.services = services
    console.state.sessions = sessions
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    console.include_router(session.router)
    console.include_router(overview.router)
    console.include_router(tenants.router)
    console.include_router(tokens.router)
    console.include_router(information.router)
    console.include_router(devices.router)
    console.include_router(jobs.router)
    console.include_router(dead_letters.router)
    install_error_pages(console)
    return console


__all__ = ["ConsoleSessions", "build_console"]
