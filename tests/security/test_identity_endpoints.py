"""Issue 18, defect 3: a tenant cannot choose where its tokens come from beyond what the
operator allows.

The attacker holds one tenant's fleet_admin key (a dealer, a compromised site) and runs a
host of its own (a listener on loopback, under a certificate the stack trusts, so a client
that came would get through TLS and hand over what it carries). It tries to point the
tenant's identity endpoints there through the admin API, and — as an older gateway could —
by writing the tenants bucket directly. No connection may reach its host, and the tenant's
people keep their tokens. A tenant that changes its identity settings for real gets its
grants marked for a new sign-in: their refresh tokens are not sent to the new authority.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens

from tests.utils import eventually
from tests.utils.tenants import browser_sign_in, new_tenant, tenant_with_device, user_signs_in, write_bucket
from tests.utils.trap import trap

REFUSED = "https://fleetmail.dev/problems/identity-endpoint-refused"


@contextlib.asynccontextmanager
async def fleet_admin(stack, admin: httpx.AsyncClient, tenant_id: str) -> AsyncIterator[httpx.AsyncClient]:
    """The tenant's own administrator: a fleet_admin key scoped to it."""
    created = await admin.post(
        "/v1/admin/api-keys", json={"name": "dealer", "role": "fleet_admin", "tenant_ids": [tenant_id]}
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        yield http


async def user_with_grant(stack, emulator_http, admin) -> tuple[str, Principal]:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    user = f"anna-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, device, user)
    return tenant_id, Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)


async def outcome(stack, principal: Principal, force_refresh: bool = False) -> AccessTokenOutcome:
    return (await request_tokens(stack, principal, 1, force_refresh=force_refresh))[0].outcome


async def test_a_fleet_admin_cannot_send_the_tenants_sign_ins_and_refreshes_to_its_host(
    stack, emulator_http, admin
) -> None:
    tenant_id, anna = await user_with_grant(stack, emulator_http, admin)
    async with trap(stack) as evil, fleet_admin(stack, admin, tenant_id) as dealer:
        settings = (await dealer.get(f"/v1/admin/tenants/{tenant_id}")).json()
        answers = []
        for identity in (
            {"authority_host": evil.url.replace("https:", "http:")},
            {"authority_host": f"https://login.microsoftonline.com@127.0.0.1:{evil.url.rsplit(':', 1)[1]}"},
            {"authority_host": stack.microsoft_url, "token_uri": f"{evil.url}/token"},
            {"authority_host": evil.url},
        ):
            put = await dealer.put(f"/v1/admin/tenants/{tenant_id}", json={**settings, "identity": identity})
            answers.append((identity, put.status_code, put.json()))
        # Whatever was answered, the attacker goes on: a sign-in and a refresh of Anna's grant.
        await dealer.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
        await request_tokens(stack, anna, 1, force_refresh=True)
        assert evil.connections == 0, evil.requests
        for identity, status, problem in answers:
            assert status == 422 and problem["type"] == REFUSED, (identity, problem)
            assert "identity." in problem["detail"]
        assert await outcome(stack, anna, force_refresh=True) is AccessTokenOutcome.GRANTED
    stored = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    assert stored["identity"]["authority_host"] is None and stored["identity"]["token_uri"] is None


async def test_a_google_tenant_cannot_redeem_its_codes_at_the_attackers_token_endpoint(
    stack, emulator_http, admin
) -> None:
    tenant_id, address = await new_tenant(admin, "google")
    async with trap(stack) as evil, fleet_admin(stack, admin, tenant_id) as dealer:
        settings = (await dealer.get(f"/v1/admin/tenants/{tenant_id}")).json()
        evil_identity = {**settings["identity"], "token_uri": f"{evil.url}/token"}
        put = await dealer.put(f"/v1/admin/tenants/{tenant_id}", json={**settings, "identity": evil_identity})
        # The administrator signs in as ever; the code is redeemed, the grant refreshed.
        started = (await dealer.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
        landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
        refreshed = await outcome(stack, principal, force_refresh=True)
        assert evil.connections == 0, evil.requests
        assert put.status_code == 422 and put.json()["type"] == REFUSED
        assert landed.status_code == 200 and refreshed is AccessTokenOutcome.GRANTED


async def test_token_service_refuses_an_endpoint_an_older_gateway_let_through(
    stack, emulator_http, admin
) -> None:
    tenant_id, anna = await user_with_grant(stack, emulator_http, admin)
    current = TenantSettings.model_validate((await admin.get(f"/v1/admin/tenants/{tenant_id}")).json())
    async with trap(stack) as evil:
        evil_identity = current.identity.model_copy(update={"authority_host": evil.url})
        await write_bucket(stack, current.model_copy(update={"identity": evil_identity}))

        async def refused() -> bool:
            reply = (await request_tokens(stack, anna, 1, force_refresh=True))[0]
            return reply.outcome is AccessTokenOutcome.CONFIGURATION_ERROR and "authority_host" in (
                reply.detail or ""
            )

        await eventually(refused, within=20, what="token-service to refuse the tenant's authority host")
        assert evil.connections == 0, evil.requests
        # The grant was never sent away: with the settings restored, it refreshes as before.
        await write_bucket(stack, current)

        async def granted() -> bool:
            return await outcome(stack, anna, force_refresh=True) is AccessTokenOutcome.GRANTED

        await eventually(granted, within=20, what="the grant to refresh at its own authority again")
        assert evil.connections == 0, evil.requests


async def test_changed_identity_settings_ask_for_a_new_sign_in_instead_of_moving_the_grant(
    stack, emulator_http, admin
) -> None:
    tenant_id, anna = await user_with_grant(stack, emulator_http, admin)
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    moved = {**settings, "identity": {**settings["identity"], "directory": "fabrikam.onmicrosoft.com"}}
    assert (await admin.put(f"/v1/admin/tenants/{tenant_id}", json=moved)).status_code == 200

    async def needs_sign_in() -> bool:
        return await outcome(stack, anna, force_refresh=True) is AccessTokenOutcome.REAUTHORIZATION_REQUIRED

    await eventually(needs_sign_in, within=20, what="the grant to need a new sign-in")
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()
    [grant] = [g for g in grants["grants"] if g["principal"]["address"] == anna.address]
    assert grant["status"] == "reauthorization_required"


async def test_a_google_tenant_with_its_own_client_signs_in_with_its_own_secret_only(
    stack, emulator_http, admin
) -> None:
    tenant_id, address = await new_tenant(admin, "google")
    client_id, secret = f"{uuid.uuid4().hex[:8]}.apps.googleusercontent.com", uuid.uuid4().hex
    registered = await emulator_http.post(
        f"{stack.google_url}/_emulator/apps",
        json={
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": [f"{stack.gateway_url}/oauth/callback"],
        },
    )
    assert registered.status_code == 200
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    own = {**settings, "identity": {**settings["identity"], "client_id": client_id}}
    assert (await admin.put(f"/v1/admin/tenants/{tenant_id}", json=own)).status_code == 200

    async def sign_in() -> dict:
        started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
        await browser_sign_in(stack, emulator_http, started["authorization_url"])
        path = f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}"
        return (await admin.get(path)).json()

    # The service's secret is not the tenant's to use: without its own, Google refuses the client.
    refused = await sign_in()
    assert refused["state"] == "failed" and "invalid_client" in refused["detail"], refused
    stored = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"google_client_secret": secret}
    )
    assert stored.status_code == 200 and stored.json()["google_client_secret"] is True, stored.text
    assert (await sign_in())["state"] == "succeeded"
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    assert await outcome(stack, principal, force_refresh=True) is AccessTokenOutcome.GRANTED
