"""Deleting user grants: on request ([Delete]) and by Auto Delete on logout or auto reset."""

import asyncio
import uuid

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens


async def tenant_with_device(
    admin: httpx.AsyncClient, auto_delete: bool, smtp_port: int | None = None
) -> tuple[str, tuple[str, str]]:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": f"admin@{tenant_id}.example",
            "from_policy": "login_user_address",
            "auto_delete": auto_delete,
            "smtp": {"host": "127.0.0.1", "port": smtp_port} if smtp_port else None,
        },
    )
    assert created.status_code == 200
    device = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"d-{tenant_id}"})
    ).json()
    return tenant_id, (device["device_id"], device["secret"])


async def user_signs_in(stack, emulator: httpx.AsyncClient, device: tuple[str, str], user: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        started = (await panel.post("/v1/device/sign-ins", json={"user": user})).json()
        assert started["user_code"] and started["verification_uri"]
        await emulator.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": user},
        )
        for _ in range(150):
            status = (await panel.get(f"/v1/device/sign-ins/{started['acquisition_id']}")).json()
            if status["state"] != "pending":
                break
            await asyncio.sleep(0.2)
    assert status["state"] == "succeeded", status


async def outcome(stack, principal: Principal) -> AccessTokenOutcome:
    return (await request_tokens(stack, principal, 1))[0].outcome


async def eventually(check, expected, seconds: float = 10.0):
    value = None
    for _ in range(int(seconds / 0.2)):
        value = await check()
        if value == expected:
            return value
        await asyncio.sleep(0.2)
    return value


async def test_auto_delete_on_logout_and_auto_reset(stack, emulator_http, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=True)
    for kind in ("user_logged_out", "auto_reset"):
        user = f"{kind}-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
        await user_signs_in(stack, emulator_http, device, user)
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
        assert await outcome(stack, principal) is AccessTokenOutcome.GRANTED
        async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device) as panel:
            reported = await panel.post("/v1/device/events", json={"kind": kind, "user": user})
        assert reported.status_code == 202
        assert (
            await eventually(lambda: outcome(stack, principal), AccessTokenOutcome.NO_GRANT)
            is AccessTokenOutcome.NO_GRANT
        )


async def test_without_auto_delete_a_logout_keeps_the_grant(stack, emulator_http, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    user = f"keeper@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, device, user)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device) as panel:
        await panel.post("/v1/device/events", json={"kind": "user_logged_out", "user": user})
    await asyncio.sleep(1.5)
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
    assert await outcome(stack, principal) is AccessTokenOutcome.GRANTED
    # The administrator's [Delete] removes it.
    deleted = await admin.delete(f"/v1/admin/tenants/{tenant_id}/tokens/users/{user}")
    assert deleted.json() == {"deleted": True}
    assert await outcome(stack, principal) is AccessTokenOutcome.NO_GRANT
    assert (await admin.delete(f"/v1/admin/tenants/{tenant_id}/tokens/users/{user}")).json() == {
        "deleted": False
    }
