"""Deleting user grants: on request ([Delete]) and by Auto Delete on logout or auto reset."""

import uuid

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens

from tests.utils import eventually
from tests.utils.tenants import sign_in_finished, tenant_with_device, user_signs_in


async def outcome(stack, principal: Principal) -> AccessTokenOutcome:
    return (await request_tokens(stack, principal, 1))[0].outcome


async def no_grant(stack, principal: Principal) -> None:
    async def deleted() -> bool:
        return await outcome(stack, principal) is AccessTokenOutcome.NO_GRANT

    await eventually(deleted, within=10, what=f"the grant of {principal.address} to be deleted")


async def report(stack, device: tuple[str, str], kind: str, user: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device) as panel:
        reported = await panel.post("/v1/device/events", json={"kind": kind, "user": user})
    assert reported.status_code == 202


async def test_auto_delete_on_logout_and_auto_reset(stack, emulator_http, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=True)
    for kind in ("user_logged_out", "auto_reset"):
        user = f"{kind}-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
        await user_signs_in(stack, emulator_http, device, user)
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
        assert await outcome(stack, principal) is AccessTokenOutcome.GRANTED
        await report(stack, device, kind, user)
        await no_grant(stack, principal)


async def test_without_auto_delete_a_logout_keeps_the_grant(stack, emulator_http, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    user = f"keeper@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, device, user)
    # A tenant with Auto Delete on, whose logout reaches token-service after the keeper's:
    # once its grant is gone, the keeper's logout has been handled too.
    witness_tenant, witness_device = await tenant_with_device(admin, auto_delete=True)
    witness = Principal(
        tenant_id=witness_tenant, kind=PrincipalKind.USER, address=f"witness@{witness_tenant}.example"
    )
    await user_signs_in(stack, emulator_http, witness_device, witness.address)
    await report(stack, device, "user_logged_out", user)
    await report(stack, witness_device, "user_logged_out", witness.address)
    await no_grant(stack, witness)
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
    assert await outcome(stack, principal) is AccessTokenOutcome.GRANTED
    # The administrator's [Delete] removes it.
    deleted = await admin.delete(f"/v1/admin/tenants/{tenant_id}/tokens/users/{user}")
    assert deleted.json() == {"deleted": True}
    assert await outcome(stack, principal) is AccessTokenOutcome.NO_GRANT
    assert (await admin.delete(f"/v1/admin/tenants/{tenant_id}/tokens/users/{user}")).json() == {
        "deleted": False
    }


async def test_a_users_grant_and_its_auto_delete_stay_in_the_devices_own_tenant(
    stack, emulator_http, admin
) -> None:
    tenant_a, device_a = await tenant_with_device(admin, auto_delete=True)
    tenant_b, device_b = await tenant_with_device(admin, auto_delete=True)
    user = f"roaming-{uuid.uuid4().hex[:6]}@fabrikam.example"
    # Two sites of one company: the owner lists the company's mail domain in both.
    for tenant_id in (tenant_a, tenant_b):
        settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
        listed = await admin.put(
            f"/v1/admin/tenants/{tenant_id}", json={**settings, "mail_domains": ["fabrikam.example"]}
        )
        assert listed.status_code == 200, listed.text
    in_a = Principal(tenant_id=tenant_a, kind=PrincipalKind.USER, address=user)
    in_b = Principal(tenant_id=tenant_b, kind=PrincipalKind.USER, address=user)

    # A sign-in at device A is tenant A's: device B cannot even see it, and it makes no grant in B.
    async with (
        httpx.AsyncClient(base_url=stack.gateway_url, auth=device_a, timeout=30) as panel_a,
        httpx.AsyncClient(base_url=stack.gateway_url, auth=device_b, timeout=30) as panel_b,
    ):
        started = (await panel_a.post("/v1/device/sign-ins", json={"user": user})).json()
        foreign = (await panel_b.get(f"/v1/device/sign-ins/{started['acquisition_id']}")).json()
        assert foreign["state"] == "failed" and "unknown acquisition" in foreign["detail"]
        assert foreign.get("principal") is None
        await emulator_http.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": user},
        )
        assert (await sign_in_finished(panel_a, started["acquisition_id"]))["state"] == "succeeded"
    assert await outcome(stack, in_a) is AccessTokenOutcome.GRANTED
    assert await outcome(stack, in_b) is AccessTokenOutcome.NO_GRANT

    # The same user signs in at device B too; device A's logout ends tenant A's grant only.
    await user_signs_in(stack, emulator_http, device_b, user)
    await report(stack, device_a, "user_logged_out", user)
    await no_grant(stack, in_a)
    assert await outcome(stack, in_b) is AccessTokenOutcome.GRANTED

    async with httpx.AsyncClient(base_url=stack.gateway_url) as anonymous:
        assert (await anonymous.post("/v1/device/sign-ins", json={"user": "a@b.example"})).status_code == 401
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device_a) as panel:
        bad = await panel.post("/v1/device/events", json={"kind": "user_logged_out"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
