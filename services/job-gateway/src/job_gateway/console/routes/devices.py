"""A tenant's devices: the list and its search, registering one (its secret shown once, with
what to type into the device's panel), and a device's page: rotate its secret, disable or
enable it, its allowlisted source addresses and Internet Fax machine address.

Every change is the API's use case (`services.devices`); a new or rotated secret is shown in
the answer to the POST only (never stored, never on a page a GET returns).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import TenantSettings
from pydantic import ValidationError

from ...domain import Access
from ...errors import Conflict, InvalidRequest
from ...schemas import DeviceChange, DeviceCredentials, DeviceRegistration, summarise
from ..deps import ConsoleUser, ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(prefix="/tenants/{tenant_id}/devices", dependencies=[Protected])

PAGE = 25


def _lines(text: str) -> list[str]:
    """A textarea's entries, one a line (or separated by commas), blanks left out."""
    return [entry.strip() for line in text.splitlines() for entry in line.split(",") if entry.strip()]


async def _tenant(services: ServicesDep, user: ConsoleUser, tenant_id: str, access: Access) -> TenantSettings:
    user.require(access, tenant_id)
    return await services.tenants.read(user.administrator, tenant_id)


@router.get("", name="devices")
async def devices_page(
    request: Request,
    tenant_id: str,
    user: ConsoleUserDep,
    services: ServicesDep,
    search: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    tenant = await _tenant(services, user, tenant_id, Access.READ)
    return await _list(request, user, services, tenant, search, page)


async def _list(
    request: Request,
    user: ConsoleUser,
    services: ServicesDep,
    tenant: TenantSettings,
    search: str = "",
    page: int = 1,
    status_code: int = 200,
    **context: Any,
) -> Response:
    found = await services.devices.in_tenant(tenant, search or None)
    pages = max(1, -(-len(found) // PAGE))
    page = min(page, pages)
    return render(
        request,
        "devices.html",
        user,
        status_code,
        tenant=tenant,
        devices=found[(page - 1) * PAGE : page * PAGE],
        found=len(found),
        search=search,
        page=page,
        pages=pages,
        **context,
    )


@router.post("", name="device_register")
async def register_device(
    request: Request,
    tenant_id: str,
    user: ConsoleUserDep,
    services: ServicesDep,
    device_id: Annotated[str, Form()],
    name: Annotated[str, Form()] = "",
    allow_cidrs: Annotated[str, Form()] = "",
) -> Response:
    """A new device (an id the tenant has is refused: its secret is rotated on its page)."""
    tenant = await _tenant(services, user, tenant_id, Access.WRITE)
    form = {"device_id": device_id.strip(), "name": name.strip(), "allow_cidrs": allow_cidrs}
    try:
        registration = DeviceRegistration(
            device_id=form["device_id"], name=form["name"], allow_cidrs=_lines(allow_cidrs)
        )
        credentials = await services.devices.register(tenant.tenant_id, registration, new_only=True)
    except ValidationError as exc:
        return await _list(
            request, user, services, tenant, status_code=422, error=summarise(exc.errors()), form=form
        )
    except (InvalidRequest, Conflict) as exc:
        status = 422 if isinstance(exc, InvalidRequest) else 409
        return await _list(request, user, services, tenant, status_code=status, error=exc.detail, form=form)
    return _secret(request, user, services, tenant, credentials, rotated=False)


def _secret(
    request: Request,
    user: ConsoleUser,
    services: ServicesDep,
    tenant: TenantSettings,
    credentials: DeviceCredentials,
    rotated: bool,
) -> Response:
    return render(
        request,
        "device_secret.html",
        user,
        tenant=tenant,
        credentials=credentials,
        panel=services.device_panel,
        rotated=rotated,
    )


@router.get("/{device_id}", name="device")
async def device_page(
    request: Request, tenant_id: str, device_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    tenant = await _tenant(services, user, tenant_id, Access.READ)
    device = await services.devices.one(tenant, device_id)
    version = await services.devices.secret_version(tenant.tenant_id, device_id)
    return render(
        request,
        "device.html",
        user,
        tenant=tenant,
        device=device,
        functions=list(JobFunction),
        secret_version=version,
    )


@router.post("/{device_id}/secret", name="device_rotate")
async def rotate_secret(
    request: Request, tenant_id: str, device_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """A new secret: the old one stops working at once."""
    tenant = await _tenant(services, user, tenant_id, Access.WRITE)
    # The secret the page showed: a form sent twice (a reload of this answer) rotates once.
    version = (await request.form()).get("secret_version")
    credentials = await services.devices.rotate_secret(
        tenant.tenant_id, device_id, version if isinstance(version, str) else None
    )
    return _secret(request, user, services, tenant, credentials, rotated=True)


@router.post("/{device_id}/enabled", name="device_enabled")
async def switch_device(
    request: Request,
    tenant_id: str,
    device_id: str,
    enabled: Annotated[Literal["on", "off"], Form()],
    user: ConsoleUserDep,
    services: ServicesDep,
) -> Response:
    tenant = await _tenant(services, user, tenant_id, Access.WRITE)
    await services.devices.change(tenant, device_id, DeviceChange(disabled=enabled == "off"))
    return RedirectResponse(
        request.url_for("device", tenant_id=tenant_id, device_id=device_id), status_code=303
    )


@router.post("/{device_id}/settings", name="device_settings")
async def change_device(
    request: Request,
    tenant_id: str,
    device_id: str,
    user: ConsoleUserDep,
    services: ServicesDep,
    name: Annotated[str, Form()] = "",
    machine_address: Annotated[str, Form()] = "",
    allow_cidrs: Annotated[str, Form()] = "",
    smtp_function: Annotated[JobFunction | None, Form()] = None,
) -> Response:
    """Its name, Internet Fax machine address, allowlisted source ranges and what a message
    over SMTP becomes, as the form has them (an emptied allowlist is emptied; an empty
    machine address leaves it as it is: the API has no way to remove one)."""
    tenant = await _tenant(services, user, tenant_id, Access.WRITE)
    device = await services.devices.one(tenant, device_id)
    try:
        change = DeviceChange(
            name=name.strip(),
            machine_address=machine_address.strip() or None,
            allow_cidrs=_lines(allow_cidrs),
            smtp_function=smtp_function,
        )
        await services.devices.change(tenant, device_id, change)
    except ValidationError as exc:
        error = summarise(exc.errors())
        return render(
            request,
            "device.html",
            user,
            422,
            tenant=tenant,
            device=device,
            functions=list(JobFunction),
            error=error,
        )
    except (InvalidRequest, Conflict) as exc:
        status = 422 if isinstance(exc, InvalidRequest) else 409
        return render(
            request,
            "device.html",
            user,
            status,
            tenant=tenant,
            device=device,
            functions=list(JobFunction),
            error=exc.detail,
        )
    return RedirectResponse(
        request.url_for("device", tenant_id=tenant_id, device_id=device_id), status_code=303
    )
