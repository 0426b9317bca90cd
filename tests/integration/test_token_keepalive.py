"""Keep-alive: idle grants are redeemed before Microsoft's 90 days; unpreventable deaths are announced."""

import asyncio

import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.probes import events, request_tokens, tenant_with_administrator_grant

from .test_token_acquisition import browser_sign_in, new_tenant

SWEEPING = {"FLEETMAIL_TOKEN_KEEPALIVE_INTERVAL_S": "1", "FLEETMAIL_TOKEN_KEEPALIVE_IDLE_S": "3"}


@pytest.fixture
async def sweeper(stack):
    replica = await stack.add_replica("token-service", SWEEPING)
    yield replica
    await stack.stop_part(replica)


async def test_an_idle_microsoft_grant_outlives_90_days(stack, emulator_http, sweeper) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    # The refresh token is 89 days old at the provider; the sweep finds it idle and redeems it.
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/age", json={"user": principal.address, "days": 89}
    )
    for _ in range(50):
        refreshed = [
            e
            for e in await events(stack, "fleetmail.events.v1.tokens.refreshed")
            if e["principal"]["tenant_id"] == principal.tenant_id
        ]
        if refreshed:
            break
        await asyncio.sleep(0.3)
    assert refreshed and refreshed[0]["rotated"] is True
    # Two more days: the original token would now be dead (AADSTS700082); the grant is not.
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/age", json={"user": principal.address, "days": 2}
    )
    reply = (await request_tokens(stack, principal, 1, force_refresh=True))[0]
    assert reply.outcome is AccessTokenOutcome.GRANTED


async def test_a_testing_mode_google_grant_is_announced_once(stack, emulator_http, admin, sweeper) -> None:
    tenant_id, _ = await new_tenant(admin, "google")
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    settings["identity"]["google_testing_mode"] = True
    assert (await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)).status_code == 200
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    assert (await browser_sign_in(stack, emulator_http, started["authorization_url"])).status_code == 200
    await asyncio.sleep(4)  # several sweeps
    expiring = [
        e
        for e in await events(stack, "fleetmail.events.v1.tokens.expiring")
        if e["principal"]["tenant_id"] == tenant_id
    ]
    assert len(expiring) == 1
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert grants[0]["predicted_death_at"] == expiring[0]["predicted_death_at"]
