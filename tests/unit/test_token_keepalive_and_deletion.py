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


async def test_a_users_grant_unused_for_the_tenants_window_lapses_and_the_administrators_never() -> None:
    world = TokenWorld(tenant(user_token_idle_days=30))
    service = world.replica()
    active = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="busy@t1.example")
    for principal in (ADMIN, USER, active):
        await world.signed_in(principal)
    world.clock.advance(20 * DAY_S)
    assert (await handlers.access_token(service, AccessTokenRequest(principal=active))).outcome is (
        AccessTokenOutcome.GRANTED
    )  # a job of this user: a use
    world.clock.advance(10 * DAY_S - 60)
    await service.keepalive.sweep()  # both users kept alive (redeemed: idle 14 days), not a use
    assert world.events.of("deleted") == []
    world.clock.advance(60)
    await service.keepalive.sweep()
    assert await world.grants.get(USER) is None
    assert await world.grants.get(active) is not None and await world.grants.get(ADMIN) is not None
    [lapsed] = world.events.of("deleted")
    assert lapsed.principal == USER and lapsed.reason == "idle"
    world.clock.advance(365 * DAY_S)
    await service.keepalive.sweep()
    assert await world.grants.get(ADMIN) is not None and await world.grants.get(active) is None


async def test_a_sign_in_again_restarts_the_users_window() -> None:
    world = TokenWorld()  # 90 days by default
    service = world.replica()
    await world.signed_in(USER)
    world.clock.advance(89 * DAY_S)
    await world.signed_in(USER)
    world.clock.advance(2 * DAY_S)
    await service.keepalive.sweep()
    assert await world.grants.get(USER) is not None and world.events.of("deleted") == []


async def test_a_new_administrator_address_marks_the_grant_and_its_token_is_not_handed_out() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    granted = await handlers.access_token(service, AccessTokenRequest(principal=ADMIN))
    assert granted.outcome is AccessTokenOutcome.GRANTED  # this replica now holds the token
    before = await world.tenants.get("t1")
    after = before.model_copy(update={"administrator_address": "it@t1.example"})
    world.tenants.put(after)
    new_admin = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="it@t1.example")
    reply = await handlers.access_token(service, AccessTokenRequest(principal=new_admin))
    assert reply.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED and reply.access_token is None
    why = "the administrator address changed from admin@t1.example to it@t1.example"
    assert reply.detail is not None and why in reply.detail
    [view] = (await handlers.grant_status(service, "t1")).grants
    assert view.status is GrantStatus.REAUTHORIZATION_REQUIRED
    assert view.status_detail is not None and why in view.status_detail
    # The watch's news, on every replica, says nothing more: one event.
    await world.replica("replica-b").drift.tenant_changed(before, after)
    [event] = world.events.of("reauthorization_required")
    assert event.error == "administrator_address_changed" and why in event.detail
    await world.signed_in(new_admin)
    assert (await handlers.access_token(service, AccessTokenRequest(principal=new_admin))).outcome is (
        AccessTokenOutcome.GRANTED
    )


async def test_a_new_provider_marks_every_delegated_grant_at_once() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    await world.signed_in(USER)
    before = await world.tenants.get("t1")
    after = before.model_copy(update={"provider": Provider.GOOGLE})
    world.tenants.put(after)
    await service.drift.tenant_changed(before, after)
    for principal in (ADMIN, USER):
        stored = await world.grants.get(principal)
        assert stored is not None and stored.status is GrantStatus.REAUTHORIZATION_REQUIRED
        assert "changed from Microsoft to Google" in (stored.status_detail or "")
    assert {e.error for e in world.events.of("reauthorization_required")} == {"provider_changed"}


async def test_delete_every_users_grant_of_a_tenant_keeps_the_administrators_and_other_tenants() -> None:
    world = TokenWorld(tenant("t1"), tenant("t2"))
    service = world.replica()
    other = Principal(tenant_id="t2", kind=PrincipalKind.USER, address="x@t2.example")
    second = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="second@t1.example")
    for principal in (ADMIN, USER, second, other):
        await world.signed_in(principal)
    assert await service.deletion.delete_users("t1") == 2
    assert await world.grants.get(ADMIN) is not None and await world.grants.get(other) is not None
    assert await world.grants.get(USER) is None and await world.grants.get(second) is None
    assert await service.deletion.delete_users("t1") == 0


async def test_auto_reset_deletes_the_grants_of_the_devices_session_users() -> None:
    world = TokenWorld(tenant("t1", auto_delete=True))
    service = world.replica()
    elsewhere = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="elsewhere@t1.example")
    session = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="Session@t1.example")
    for principal in (USER, elsewhere, session):
        await world.signed_in(principal)
    event = {
        "kind": "auto_reset",
        "tenant_id": "t1",
        "user": None,
        "session_users": [USER.address, session.address],
    }
    await handlers.device_event(service, event)
    assert await world.grants.get(USER) is None and await world.grants.get(session) is None
    assert await world.grants.get(elsewhere) is not None
