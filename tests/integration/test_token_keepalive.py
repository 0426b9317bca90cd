"""Keep-alive wired into the running service: a replica sweeping every 2 s redeems an idle
grant before Microsoft's 90 days, announces an unpreventable death once, and lets a login
user's token unused for the tenant's window lapse.

The timing rules themselves (how idle is idle, when a death is near, once per grant) are
tested with an injected clock in tests/unit/test_token_keepalive_and_deletion.py.
"""

import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.probes import events, request_tokens, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.tenants import google_grant_in_testing_mode, tenant_with_device, user_signs_in

# A sweep reads, and may redeem, every grant the session's earlier tests made: every 2 s, not
# every second, halves that; the deadlines below allow several sweeps.
SWEEPING = {"FLEETMAIL_TOKEN_KEEPALIVE_INTERVAL_S": "2", "FLEETMAIL_TOKEN_KEEPALIVE_IDLE_S": "3"}


@pytest.fixture
async def sweeper(stack):
    replica = await stack.add_replica("token-service", SWEEPING)
    yield replica
    await stack.stop_part(replica)


async def tenant_events(stack, kind: str, tenant_id: str) -> list[dict]:
    return [
        e
        for e in await events(stack, f"fleetmail.events.v1.tokens.{kind}")
        if e["principal"]["tenant_id"] == tenant_id
    ]


async def test_an_idle_microsoft_grant_outlives_90_days(stack, emulator_http, sweeper) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    # The refresh token is 89 days old at the provider; the sweep finds it idle and redeems it.
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/age", json={"user": principal.address, "days": 89}
    )
    refreshed = await eventually(
        lambda: tenant_events(stack, "refreshed", principal.tenant_id), within=15, what="a keep-alive refresh"
    )
    assert refreshed[0]["rotated"] is True
    # Two more days: the original token would now be dead (AADSTS700082); the grant is not.
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/age", json={"user": principal.address, "days": 2}
    )
    reply = (await request_tokens(stack, principal, 1, force_refresh=True))[0]
    assert reply.outcome is AccessTokenOutcome.GRANTED


async def test_a_testing_mode_google_grant_is_announced_once(stack, emulator_http, admin, sweeper) -> None:
    tenant_id = await google_grant_in_testing_mode(stack, emulator_http, admin)
    await eventually(lambda: tenant_events(stack, "expiring", tenant_id), within=15, what="the announcement")
    # Two later grants announced in turn: the sweep that announced the second had finished
    # (the third is announced by a later sweep), and it had looked at the first grant again.
    for _ in range(2):
        later = await google_grant_in_testing_mode(stack, emulator_http, admin)
        await eventually(
            lambda: tenant_events(stack, "expiring", later), within=15, what="a later announcement"
        )
    expiring = await tenant_events(stack, "expiring", tenant_id)
    assert len(expiring) == 1
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert grants[0]["predicted_death_at"] == expiring[0]["predicted_death_at"]


async def test_an_idle_users_token_lapses_while_the_administrators_and_a_used_ones_are_kept_alive(
    stack, emulator_http, admin, sweeper
) -> None:
    # A window of two seconds stands for the default 90 days.
    admin_principal = await tenant_with_administrator_grant(
        stack, emulator_http, from_policy="login_user_address", user_token_idle_days=2 / 86400
    )
    tenant_id = admin_principal.tenant_id
    device = (await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": "mfp"})).json()
    idle = f"idle@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, (device["device_id"], device["secret"]), idle)
    # Another tenant keeps the default window: its user's grant is redeemed, not deleted.
    kept_tenant, kept_device = await tenant_with_device(admin, auto_delete=False)
    kept = f"kept@{kept_tenant}.example"
    await user_signs_in(stack, emulator_http, kept_device, kept)

    async def lapsed() -> list[dict]:
        return [
            e for e in await tenant_events(stack, "deleted", tenant_id) if e["principal"]["address"] == idle
        ]

    [event] = await eventually(lapsed, within=20, what="the idle user's token to lapse")
    assert event["reason"] == "idle"
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert [(g["principal"]["kind"], g["status"]) for g in grants] == [("administrator", "active")]

    async def kept_alive() -> list[dict]:
        return [
            e
            for e in await tenant_events(stack, "refreshed", kept_tenant)
            if e["principal"]["address"] == kept
        ]

    await eventually(kept_alive, within=20, what="the used user's token to be kept alive")
    assert await tenant_events(stack, "deleted", kept_tenant) == []
    [row] = (await admin.get(f"/v1/admin/tenants/{kept_tenant}/tokens")).json()["grants"]
    assert row["principal"]["address"] == kept and row["status"] == "active"
