"""Deleting user grants: on request ([Delete], one user's or every user's) and by Auto Delete on
logout or auto reset (the users whose sessions were on that device)."""

import asyncio
import uuid

import httpx
from fleetmail_cli.main import app
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens
from typer.testing import CliRunner

from tests.utils import eventually
from tests.utils.jobs import submit
from tests.utils.tenants import sign_in_finished, tenant_with_device, user_signs_in


async def outcome(stack, principal: Principal) -> AccessTokenOutcome:
    return (await request_tokens(stack, principal, 1))[0].outcome


async def no_grant(stack, principal: Principal) -> None:
    async def deleted() -> bool:
        return await outcome(stack, principal) is AccessTokenOutcome.NO_GRANT

    await eventually(deleted, within=10, what=f"the grant of {principal.address} to be deleted")


async def report(stack, device: tuple[str, str], kind: str, user: str | None) -> None:
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


async def test_delete_every_users_token_of_a_tenant_at_once_from_the_api_and_the_cli(
    stack, emulator_http, admin
) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    users = [
        Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=f"{name}@{tenant_id}.example")
        for name in ("scan", "fax")
    ]
    other_tenant, other_device = await tenant_with_device(admin, auto_delete=False)
    other = Principal(tenant_id=other_tenant, kind=PrincipalKind.USER, address=f"keep@{other_tenant}.example")
    for principal, at in ((users[0], device), (users[1], device), (other, other_device)):
        await user_signs_in(stack, emulator_http, at, principal.address)
    env = {"FLEETMAIL_URL": stack.gateway_url, "FLEETMAIL_API_KEY": stack.admin_api_key(), "COLUMNS": "200"}
    runner = CliRunner()
    refused = await asyncio.to_thread(runner.invoke, app, ["tokens", "delete", tenant_id], env=env)
    assert refused.exit_code == 1 and "--all-users" in refused.output
    done = await asyncio.to_thread(
        runner.invoke, app, ["tokens", "delete", tenant_id, "--all-users"], env=env
    )
    assert done.exit_code == 0 and "2 user tokens deleted" in done.output, done.output
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"] == []
    for principal in users:
        assert await outcome(stack, principal) is AccessTokenOutcome.NO_GRANT
    assert await outcome(stack, other) is AccessTokenOutcome.GRANTED
    again = await admin.delete(f"/v1/admin/tenants/{tenant_id}/tokens/users")
    assert again.status_code == 200 and again.json() == {"deleted": 0}


async def test_an_auto_reset_deletes_the_tokens_of_the_users_whose_sessions_were_on_that_device(
    stack, emulator_http, admin
) -> None:
    tenant_id, first = await tenant_with_device(admin, auto_delete=True, smtp_port=stack.ports.smtp_starttls)
    registered = await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": "floor-2"})
    second = (registered.json()["device_id"], registered.json()["secret"])

    def user(name: str) -> Principal:
        return Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=f"{name}@{tenant_id}.example")

    signed_here, signed_there, sent_here = user("here"), user("there"), user("roams")
    await user_signs_in(stack, emulator_http, first, signed_here.address)
    await user_signs_in(stack, emulator_http, second, signed_there.address)
    await user_signs_in(stack, emulator_http, second, sent_here.address)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=first, timeout=30) as panel:
        # Signed in at the second device, this user's scan comes from the first: a session there too.
        await submit(panel, {"to": ["x@fabrikam.example"], "login_user": sent_here.address})
    # The first device resets with nobody logged in.
    await report(stack, first, "auto_reset", None)
    await no_grant(stack, signed_here)
    await no_grant(stack, sent_here)
    assert await outcome(stack, signed_there) is AccessTokenOutcome.GRANTED
