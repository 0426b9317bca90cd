"""Tenants, app registrations and sign-ins as an administrator sets them up."""

from __future__ import annotations

import re
import uuid

import httpx
import nats
from fleetmail_contracts.streams import TENANTS_BUCKET
from fleetmail_contracts.tenants import TenantSettings
from pymongo import AsyncMongoClient

from tests.utils import eventually


async def app_only_tenant(
    admin: httpx.AsyncClient, stack, provider: str, transport: str = "smtp", **identity
) -> tuple[str, str]:
    tenant_id = f"app-{uuid.uuid4().hex[:8]}"
    address = f"admin@{tenant_id}.example"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "provider": provider,
            "transport": transport,
            "administrator_address": address,
            "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
            "identity": {"app_only": True, **identity},
        },
    )
    assert created.status_code == 200, created.text
    return tenant_id, address


async def confidential_app(
    stack, emulator: httpx.AsyncClient, consented_in: str | None = "contoso"
) -> tuple[str, str]:
    """An app registration with a client secret; an administrator of `consented_in` (the
    stack's default directory unless named; None: nobody) granted it SMTP.SendAsApp."""
    client_id, secret = f"app-{uuid.uuid4().hex[:8]}", f"secret-{uuid.uuid4().hex}"
    registered = await emulator.post(
        f"{stack.microsoft_url}/_emulator/apps", json={"client_id": client_id, "client_secret": secret}
    )
    assert registered.status_code == 200
    if consented_in is not None:
        consent = {"client_id": client_id, "directory": consented_in}
        granted = await emulator.post(f"{stack.microsoft_url}/_emulator/admin-consent", json=consent)
        assert granted.status_code == 200, granted.text
    return client_id, secret


async def stored_documents(stack, tenant_id: str) -> str:
    """Everything token-service stored for the tenant, as text."""
    client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    try:
        database = client["fleetmail_tokens"]
        found = [await database["credentials"].find_one({"_id": tenant_id})]
        found += [d async for d in database["grants"].find({"tenant_id": tenant_id})]
        return repr(found)
    finally:
        await client.close()


def posted_form(page: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'action="([^"]+)"', page)
    assert action is not None, page
    return action.group(1), dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))


async def new_tenant(
    admin: httpx.AsyncClient, provider: str = "microsoft", proxy_url: str | None = None
) -> tuple[str, str]:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    address = f"admin@{tenant_id}.example"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "provider": provider,
            "administrator_address": address,
            "proxy_url": proxy_url,
        },
    )
    assert created.status_code == 200, created.text
    return tenant_id, address


async def browser_sign_in(stack, emulator: httpx.AsyncClient, authorization_url: str) -> httpx.Response:
    """What the device's browser does: open the URL, sign in, land on the callback."""
    page = await emulator.get(authorization_url)
    async with httpx.AsyncClient(timeout=30) as browser:
        if page.status_code == 302:  # Google redirects with the code in the query
            return await browser.get(page.headers["location"])
        action, fields = posted_form(page.text)  # Microsoft posts a form (response_mode=form_post)
        assert action == f"{stack.gateway_url}/oauth/callback"
        return await browser.post(action, data=fields)


async def tenant_with_device(
    admin: httpx.AsyncClient,
    auto_delete: bool,
    smtp_port: int | None = None,
    from_policy: str = "login_user_address",
) -> tuple[str, tuple[str, str]]:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": f"admin@{tenant_id}.example",
            "from_policy": from_policy,
            "auto_delete": auto_delete,
            "smtp": {"host": "127.0.0.1", "port": smtp_port} if smtp_port else None,
        },
    )
    assert created.status_code == 200
    device = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"d-{tenant_id}"})
    ).json()
    return tenant_id, (device["device_id"], device["secret"])


async def sign_in_finished(panel: httpx.AsyncClient, acquisition_id: str) -> dict:
    async def finished() -> dict | None:
        status = (await panel.get(f"/v1/device/sign-ins/{acquisition_id}")).json()
        return status if status["state"] != "pending" else None

    return await eventually(finished, what="the sign-in to finish")


async def user_signs_in(stack, emulator: httpx.AsyncClient, device: tuple[str, str], user: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        started = (await panel.post("/v1/device/sign-ins", json={"user": user})).json()
        assert started["user_code"] and started["verification_uri"]
        await emulator.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": user},
        )
        status = await sign_in_finished(panel, started["acquisition_id"])
    assert status["state"] == "succeeded", status


async def write_bucket(stack, tenant: TenantSettings) -> None:
    """Settings written straight into the tenants bucket, as a gateway that checks nothing (an
    older one) would leave them."""
    client = await nats.connect(stack.nats_url)
    try:
        bucket = await client.jetstream().key_value(TENANTS_BUCKET)
        await bucket.put(tenant.tenant_id, tenant.model_dump_json().encode())
    finally:
        await client.close()


async def google_grant_in_testing_mode(stack, emulator: httpx.AsyncClient, admin: httpx.AsyncClient) -> str:
    """A Google tenant whose app is in Testing status (its grant dies 7 days after consent, which
    no keep-alive prevents), with its administrator grant; its id."""
    tenant_id, _ = await new_tenant(admin, "google")
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    settings["identity"]["google_testing_mode"] = True
    assert (await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)).status_code == 200
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    assert (await browser_sign_in(stack, emulator, started["authorization_url"])).status_code == 200
    return tenant_id
