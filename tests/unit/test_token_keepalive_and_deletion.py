"""Keep-alive, expiry announcements and deletion, with fakes and a clock the test moves: the
timing rules themselves (idle days, the announcement horizon), without waiting for them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenRequest,
    GrantStatus,
    Principal,
    PrincipalKind,
    Provider,
)
from token_service import handlers

from tests.fakes.token import TokenWorld, tenant, turns

ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")
USER = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="scan.user@t1.example")
DAY_S = 24 * 3600


async def test_keep_alive_redeems_a_grant_only_once_it_has_been_idle_long_enough() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.clock.advance(14 * DAY_S - 60)
    await service.keepalive.sweep()
    assert world.identity.calls["refresh"] == 0
    world.clock.advance(60)
    await service.keepalive.sweep()
    assert world.identity.calls["refresh"] == 1
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.last_refreshed_at == world.clock()
    assert stored.predicted_death_at == world.clock() + timedelta(days=90)
    [refreshed] = world.events.of("refreshed")
    assert refreshed.rotated is True and refreshed.predicted_death_at == stored.predicted_death_at
    world.clock.advance(13 * DAY_S)
    await service.keepalive.sweep()
    assert world.identity.calls["refresh"] == 1


async def test_keep_alive_on_two_replicas_redeems_once() -> None:
    world = TokenWorld()
    first, second = world.replica("replica-a"), world.replica("replica-b")
    await world.signed_in(ADMIN)
    world.clock.advance(15 * DAY_S)
    [release] = world.identity.hold()
    sweeping = asyncio.create_task(first.keepalive.sweep())
    await turns(lambda: world.identity.calls["refresh"] == 1)
    await second.keepalive.sweep()  # finds the lease taken: the redemption is under way
    release.set()
    await sweeping
    await second.keepalive.sweep()  # and now finds the grant freshly redeemed
    assert world.identity.calls["refresh"] == 1


async def test_a_grant_that_died_while_idle_is_marked_and_the_sweep_goes_on() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    await world.signed_in(USER)
    world.identity.revoke_user(ADMIN.address)
    world.clock.advance(15 * DAY_S)
    await service.keepalive.sweep()
    admin, user = await world.grants.get(ADMIN), await world.grants.get(USER)
    assert admin is not None and admin.status is GrantStatus.REAUTHORIZATION_REQUIRED
    assert user is not None and user.status is GrantStatus.ACTIVE and user.last_refreshed_at == world.clock()
    assert sorted(world.events.kinds()) == ["reauthorization_required", "refreshed"]


async def test_app_only_grants_are_not_kept_alive() -> None:
    world = TokenWorld(tenant(identity={"app_only": True}))
    service = world.replica()
    reply = await handlers.access_token(service, AccessTokenRequest(principal=ADMIN))
    assert reply.outcome is AccessTokenOutcome.GRANTED
    world.clock.advance(30 * DAY_S)
    await service.keepalive.sweep()
    assert world.identity.calls["refresh"] == 0 and world.identity.calls["app_only"] == 1


async def test_a_death_nothing_can_prevent_is_announced_once_inside_the_horizon() -> None:
    world = TokenWorld(tenant(provider=Provider.GOOGLE, identity={"google_testing_mode": True}))
    service = world.replica(expiring_horizon_s=3 * DAY_S, keepalive_idle_s=30 * DAY_S)
    await world.signed_in(ADMIN, Provider.GOOGLE, death_in=timedelta(days=7))
    death = world.clock() + timedelta(days=7)
    world.clock.advance(4 * DAY_S - 60)
    await service.keepalive.sweep()
    assert world.events.of("expiring") == []
    world.clock.advance(60)
    for _ in range(3):
        await service.keepalive.sweep()
    [expiring] = world.events.of("expiring")
    assert expiring.predicted_death_at == death and expiring.principal == ADMIN


async def test_a_delete_removes_the_grant_once_and_says_so() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(USER)
    assert (await handlers.access_token(service, AccessTokenRequest(principal=USER))).outcome is (
        AccessTokenOutcome.GRANTED
    )
    assert await service.deletion.delete(USER, "requested")
    assert not await service.deletion.delete(USER, "requested")
    after = await handlers.access_token(service, AccessTokenRequest(principal=USER))
    assert after.outcome is AccessTokenOutcome.NO_GRANT  # this replica forgot its token too
    [deleted] = world.events.of("deleted")
    assert deleted.principal == USER and deleted.reason == "requested"


async def test_a_deleted_google_grant_is_revoked_at_google() -> None:
    world = TokenWorld(tenant(provider=Provider.GOOGLE))
    service = world.replica()
    signed_in = await world.signed_in(USER, Provider.GOOGLE)
    assert await service.deletion.delete(USER, "requested")
    assert world.identity.revoked_tokens == [signed_in.refresh_token]


async def test_a_delete_for_an_unknown_tenant_still_deletes() -> None:
    world = TokenWorld(tenant("t2"))
    service = world.replica()
    await world.signed_in(USER)
    assert await service.deletion.delete(USER, "requested")
    assert await world.grants.get(USER) is None


async def test_auto_delete_follows_the_tenants_setting() -> None:
    world = TokenWorld(tenant("t1", auto_delete=True), tenant("t2"))
    service = world.replica()
    kept = Principal(tenant_id="t2", kind=PrincipalKind.USER, address="kept@t2.example")
    reset = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="reset@t1.example")
    for principal in (USER, kept, reset):
        await world.signed_in(principal)
    await handlers.device_event(service, {"kind": "user_logged_out", "tenant_id": "t1", "user": USER.address})
    await handlers.device_event(service, {"kind": "user_logged_out", "tenant_id": "t2", "user": kept.address})
    await handlers.device_event(service, {"kind": "auto_reset", "tenant_id": "t1", "user": reset.address})
    await handlers.device_event(service, {"kind": "auto_reset", "tenant_id": "t1", "user": None})
    await handlers.device_event(
        service, {"kind": "user_logged_out", "tenant_id": "t9", "user": "x@t9.example"}
    )
    assert await world.grants.get(USER) is None and await world.grants.get(reset) is None
    assert await world.grants.get(kept) is not None
    assert [(e.principal.address, e.reason) for e in world.events.of("deleted")] == [
        (USER.address, "user_logged_out"),
        (reset.address, "auto_reset"),
    ]


async def test_the_sweep_marks_grants_whose_tenant_changed_its_identity_settings_without_a_call() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    await world.signed_in(USER)
    await service.keepalive.sweep()
    assert world.events.of("reauthorization_required") == []
    world.tenants.put(
        tenant(identity={"directory": "fabrikam.onmicrosoft.com"})
    )  # the administrator moved the tenant
    await service.keepalive.sweep()
    for principal in (ADMIN, USER):
        stored = await world.grants.get(principal)
        assert stored is not None and stored.status is GrantStatus.REAUTHORIZATION_REQUIRED
    assert {e.error for e in world.events.of("reauthorization_required")} == {"identity_settings_changed"}
    assert len(world.events.of("reauthorization_required")) == 2 and world.identity.calls["refresh"] == 0
    reply = await handlers.access_token(service, AccessTokenRequest(principal=USER, force_refresh=True))
    assert (
        reply.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED and world.identity.calls["refresh"] == 0
    )
