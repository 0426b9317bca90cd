"""A tenant's page, the device's [OAuth 2.0] setting screen: its settings (with what a change
does, shown before it is saved), its tokens and its credentials; and a new tenant.

Every change goes through the API's use cases: `tenants.save` (and `tenants.preview`, the
same checks), `tenants.create`, `tokens.set_credentials`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from fleetmail_contracts.tenants import DEFAULT_SMTP, FromPolicy, SmtpSecurity
from fleetmail_contracts.tokens import Provider
from pydantic import ValidationError

from ...domain import Access, Role
from ...errors import AdministratorAddressRequired, InvalidRequest, TenantExists, Unavailable
from ...schemas import CredentialsInput
from ..deps import ConsoleUser, ConsoleUserDep, Protected, ServicesDep
from ..pages import render
from ..tenant_form import TOP, contract_errors, form_fields, form_values, settings_from_form, use_case_errors
from .tokens import fragment_status, token_panel

router = APIRouter(dependencies=[Protected])

SECRETS = ("microsoft_client_secret", "google_client_secret", "smtp_password", "webhook_secret")
CLEARABLE = (*SECRETS, "google_service_account", "smtp_username")


def choices() -> dict[str, Any]:
    return {
        "providers": list(Provider),
        "from_policies": list(FromPolicy),
        "securities": list(SmtpSecurity),
        "default_smtp": DEFAULT_SMTP,
    }


async def tenant_page(
    request: Request,
    user: ConsoleUser,
    services: ServicesDep,
    tenant_id: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """The whole page; `context` overrides a part (the form as typed, its errors)."""
    tenant = await services.tenants.read(user.administrator, tenant_id)
    context.setdefault("values", form_values(tenant))
    context.setdefault("errors", {})
    context.setdefault("credential_errors", {})
    return render(
        request,
        "tenant.html",
        user,
        status_code,
        tenant=tenant,
        tokens=await token_panel(services, tenant),
        lists_mail_domains=user.administrator.role is Role.OWNER,
        **choices(),
        **context,
    )


@router.get("/new-tenant", name="new_tenant_form")
async def new_tenant_form(request: Request, user: ConsoleUserDep) -> Response:
    user.require(Access.WRITE, None)
    return render(request, "new_tenant.html", user, values={})


@router.post("/new-tenant", name="new_tenant")
async def new_tenant(
    request: Request,
    tenant_id: Annotated[str, Form()],
    user: ConsoleUserDep,
    services: ServicesDep,
    display_name: Annotated[str, Form()] = "",
) -> Response:
    """A tenant with the device's defaults, then its page to set it up."""
    tenant_id = tenant_id.strip()
    user.require(Access.WRITE, tenant_id)
    values = {"tenant_id": tenant_id, "display_name": display_name}
    try:
        await services.tenants.create(tenant_id, display_name.strip(), user.administrator)
    except ValidationError as exc:
        errors = contract_errors(exc)
        return render(request, "new_tenant.html", user, 422, values=values, errors=errors)
    except (InvalidRequest, TenantExists) as exc:
        status = 409 if isinstance(exc, TenantExists) else 422
        return render(request, "new_tenant.html", user, status, values=values, errors={TOP: [exc.detail]})
    return RedirectResponse(request.url_for("tenant", tenant_id=tenant_id), status_code=303)


@router.get("/tenants/{tenant_id}", name="tenant")
async def tenant(request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep) -> Response:
    user.require(Access.READ, tenant_id)
    return await tenant_page(request, user, services, tenant_id)


async def _submitted(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str) and key != "csrf_token"}


@router.post("/tenants/{tenant_id}/settings/preview", name="tenant_preview")
async def preview(request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep) -> Response:
    """What saving the form would do, or why it would be refused: a fragment under the form."""
    user.require(Access.WRITE, tenant_id)
    values = await _submitted(request)
    errors: dict[str, list[str]] = {}
    consequences: list[str] = []
    unknown: str | None = None
    try:
        settings = settings_from_form(tenant_id, values, user.administrator.role is Role.OWNER)
        try:
            grants = (await services.tokens.grants(tenant_id)).grants
        except Unavailable as exc:  # the settings can still be checked and saved
            grants, unknown = (), exc.detail
        consequences = await services.tenants.preview(tenant_id, settings, user.administrator, grants)
    except ValidationError as exc:
        errors = contract_errors(exc)
    except AdministratorAddressRequired as exc:
        errors = {"administrator_address": [exc.detail]}
    except InvalidRequest as exc:
        errors = use_case_errors(exc.detail)
    return render(
        request,
        "tenant/preview.html",
        user,
        fragment_status(request, 422) if errors else 200,
        tenant_id=tenant_id,
        consequences=consequences,
        errors=errors,
        unknown=unknown,
        fields=form_fields(user.administrator.role is Role.OWNER),
    )


@router.post("/tenants/{tenant_id}/settings", name="tenant_save")
async def save(request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep) -> Response:
    """The settings saved by the API's use case; refused: the page again, as typed, each
    refusal next to its field."""
    user.require(Access.WRITE, tenant_id)
    values = await _submitted(request)
    try:
        settings = settings_from_form(tenant_id, values, user.administrator.role is Role.OWNER)
        await services.tenants.save(tenant_id, settings, user.administrator)
    except ValidationError as exc:
        errors = contract_errors(exc)
    except AdministratorAddressRequired as exc:
        errors = {"administrator_address": [exc.detail]}
    except InvalidRequest as exc:
        errors = use_case_errors(exc.detail)
    else:
        return RedirectResponse(request.url_for("tenant", tenant_id=tenant_id), status_code=303)
    return await tenant_page(request, user, services, tenant_id, 422, values=values, errors=errors)


def _credentials_input(values: dict[str, str]) -> CredentialsInput:
    given: dict[str, Any] = {name: values[name] for name in SECRETS if values.get(name)}
    if values.get("smtp_username", "").strip():
        given["smtp_username"] = values["smtp_username"].strip()
    if values.get("google_service_account", "").strip():
        try:
            given["google_service_account"] = json.loads(values["google_service_account"])
        except ValueError as exc:
            raise InvalidRequest("google_service_account: not the JSON key file Google exports") from exc
    clear = [name for name in CLEARABLE if values.get(f"clear_{name}") == "on"]
    return CredentialsInput(**given, clear=tuple(clear))


@router.post("/tenants/{tenant_id}/credentials", name="tenant_credentials")
async def set_credentials(
    request: Request, tenant_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """Write-only: what is typed replaces what is stored, a ticked box clears it, an empty
    field leaves it; the page then says only whether each is set."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.get(tenant_id)
    values = await _submitted(request)
    try:
        await services.tokens.set_credentials(tenant.tenant_id, _credentials_input(values))
    except ValidationError as exc:
        errors = {str(e["loc"][0]) if e["loc"] else TOP: [e["msg"]] for e in exc.errors()}
    except InvalidRequest as exc:
        errors = use_case_errors(exc.detail)
    else:
        return RedirectResponse(request.url_for("tenant", tenant_id=tenant_id), status_code=303)
    # Secrets are not written back into the page: only the user name stays as typed.
    kept = {"smtp_username": values.get("smtp_username", "")}
    return await tenant_page(
        request, user, services, tenant_id, 422, credential_errors=errors, credential_values=kept
    )
