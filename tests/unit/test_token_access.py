"""Access tokens with fakes of every port and a clock that moves only when the test says:
single-flight refresh, the lease across replicas, the rotation compare-and-set, forced
refresh, and how each kind of failure is answered."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenRequest,
    GrantStatus,
    Principal,
    PrincipalKind,
)
from token_service import handlers
from token_service.errors import ConfigurationError, ProviderUnavailable, UnknownTenant

from tests.fakes.token import TokenWorld, tenant, turns

ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")
DUE_S = 3600 - 300  # five minutes left of an hour's token: inside the ten-minute margin


def request(force_refresh: bool = False, principal: Principal = ADMIN) -> AccessTokenRequest:
    return AccessTokenRequest(principal=principal, force_refresh=force_refresh)


async def test_200_concurrent_requests_for_an_expired_grant_make_one_provider_call() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    [release] = world.identity.hold()
    replies = [asyncio.create_task(handlers.access_token(service, request())) for _ in range(200)]
    await turns(lambda: world.identity.calls["refresh"] == 1)
    await turns()
    release.set()
    answered = await asyncio.gather(*replies)
    assert {r.outcome for r in answered} == {AccessTokenOutcome.GRANTED}
    assert {r.access_token for r in answered} == {world.identity.refreshed[0].access_token}
    assert world.identity.calls["refresh"] == 1
    assert world.events.kinds() == ["refreshed"]


async def test_a_fresh_token_is_handed_out_without_calling_the_provider() -> None:
    world = TokenWorld()
    service = world.replica()
    signed_in = await world.signed_in(ADMIN)
    world.clock.advance(3600 - 660)  # eleven minutes left: outside the margin
    reply = await handlers.access_token(service, request())
    assert reply.outcome is AccessTokenOutcome.GRANTED and reply.access_token == signed_in.access_token
    assert world.identity.calls["refresh"] == 0


async def test_two_replicas_make_one_call_and_the_other_waits_for_the_lease() -> None:
    world = TokenWorld()
    first, second = world.replica("replica-a"), world.replica("replica-b")
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    [release] = world.identity.hold()
    on_first = asyncio.create_task(first.access.token(ADMIN))
    await turns(lambda: world.identity.calls["refresh"] == 1)
    on_second = asyncio.create_task(second.access.token(ADMIN))
    # The second replica found the lease taken and waits to read again.
    await turns(lambda: world.clock.sleeping == 1)
    release.set()
    token = await on_first
    await turns()
    assert not on_second.done()
    world.clock.advance(world.settings.lease_poll_s)
    assert (await on_second).access_token == token.access_token
    assert world.identity.calls["refresh"] == 1


async def test_many_requests_on_two_replicas_still_make_one_call() -> None:
    world = TokenWorld()
    replicas = [world.replica("replica-a"), world.replica("replica-b")]
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    [release] = world.identity.hold()
    replies = [asyncio.create_task(handlers.access_token(replicas[n % 2], request())) for n in range(100)]
    await turns(lambda: world.identity.calls["refresh"] == 1 and world.clock.sleeping == 1)
    release.set()
    await turns(lambda: all(reply.done() for reply in replies[0::2]))
    world.clock.advance(world.settings.lease_poll_s)
    answered = await asyncio.gather(*replies)
    assert {r.outcome for r in answered} == {AccessTokenOutcome.GRANTED}
    assert len({r.access_token for r in answered}) == 1
    assert world.identity.calls["refresh"] == 1


async def test_a_waiting_replica_takes_the_refresh_over_when_the_lease_expires() -> None:
    world = TokenWorld()
    stuck, other = world.replica("replica-a"), world.replica("replica-b")
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    stuck_call, other_call = world.identity.hold(2)
    on_stuck = asyncio.create_task(stuck.access.token(ADMIN))  # its provider call hangs
    await turns(lambda: world.identity.calls["refresh"] == 1)
    taken_at = world.clock()
    waiting = asyncio.create_task(other.access.token(ADMIN))
    await turns(lambda: world.clock.sleeping == 1)
    while world.identity.calls["refresh"] < 2:
        world.clock.advance(1)
        await turns()
    # Not before the lease ran out (30 s), and not long after.
    assert timedelta(seconds=30) < world.clock() - taken_at <= timedelta(seconds=31)
    other_call.set()
    token = await waiting
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.access_token == token.access_token
    stuck_call.set()
    assert (await on_stuck).access_token == token.access_token


async def test_the_rotated_refresh_token_is_stored_before_the_token_is_handed_out() -> None:
    world = TokenWorld()
    service = world.replica()
    signed_in = await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    reply = await handlers.access_token(service, request())
    [refreshed] = world.identity.refreshed
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.refresh_token == refreshed.refresh_token != signed_in.refresh_token
    assert reply.access_token == stored.access_token == refreshed.access_token
    assert world.events.of("refreshed")[0].rotated is True


async def test_no_token_is_handed_out_when_its_refresh_cannot_be_stored() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    world.grants.unavailable = {"record_refresh"}
    refused = await handlers.access_token(service, request())
    assert refused.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE and refused.access_token is None
    assert refused.retry_after_s == 5.0
    world.grants.unavailable = set()
    granted = await handlers.access_token(service, request())
    assert granted.outcome is AccessTokenOutcome.GRANTED
    assert world.identity.calls["refresh"] == 2  # nothing of the first refresh was kept


async def test_a_replica_that_lost_the_compare_and_set_hands_out_the_winners_token() -> None:
    world = TokenWorld()
    slow, quick = world.replica("replica-a"), world.replica("replica-b")
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    slow_call, quick_call = world.identity.hold(2)
    on_slow = asyncio.create_task(slow.access.token(ADMIN))
    await turns(lambda: world.identity.calls["refresh"] == 1)
    world.clock.advance(world.settings.lease_ttl_s + 1)  # the slow replica's lease runs out
    on_quick = asyncio.create_task(quick.access.token(ADMIN))
    await turns(lambda: world.identity.calls["refresh"] == 2)
    quick_call.set()
    winner = await on_quick
    slow_call.set()
    handed_out = await on_slow
    slow_result = world.identity.refreshed[1]
    assert handed_out.access_token == winner.access_token != slow_result.access_token
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.refresh_token == world.identity.refreshed[0].refresh_token
    assert len(world.events.of("refreshed")) == 1
    # The loser remembers the winner's token, not its own.
    assert (await handlers.access_token(slow, request())).access_token == winner.access_token


async def test_a_grant_deleted_during_its_refresh_hands_out_nothing() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    [release] = world.identity.hold()
    reply = asyncio.create_task(handlers.access_token(service, request()))
    await turns(lambda: world.identity.calls["refresh"] == 1)
    assert await service.deletion.delete(ADMIN, "requested")
    release.set()
    answered = await reply
    assert answered.outcome is AccessTokenOutcome.NO_GRANT and answered.access_token is None
    assert await world.grants.get(ADMIN) is None
    assert world.events.kinds() == ["deleted"]


async def test_a_forced_refresh_after_an_smtp_535_makes_one_provider_call() -> None:
    world = TokenWorld()
    first, second = world.replica("replica-a"), world.replica("replica-b")
    signed_in = await world.signed_in(ADMIN)
    assert (await handlers.access_token(first, request())).access_token == signed_in.access_token
    world.clock.advance(60)  # the SMTP server refuses the token a minute later
    [release] = world.identity.hold()
    replies = [
        asyncio.create_task(handlers.access_token((first, second)[n % 2], request(force_refresh=True)))
        for n in range(20)
    ]
    await turns(lambda: world.identity.calls["refresh"] == 1 and world.clock.sleeping == 1)
    release.set()
    await turns(lambda: all(reply.done() for reply in replies[0::2]))
    world.clock.advance(world.settings.lease_poll_s)
    answered = await asyncio.gather(*replies)
    assert {r.outcome for r in answered} == {AccessTokenOutcome.GRANTED}
    assert {r.access_token for r in answered} == {world.identity.refreshed[0].access_token}
    assert world.identity.calls["refresh"] == 1


async def test_a_refused_grant_is_reported_once_and_stays_dead() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.identity.revoke_user(ADMIN.address)
    world.clock.advance(DUE_S)
    replies = await asyncio.gather(*(handlers.access_token(service, request()) for _ in range(20)))
    assert {r.outcome for r in replies} == {AccessTokenOutcome.REAUTHORIZATION_REQUIRED}
    again = await handlers.access_token(world.replica("replica-b"), request())
    assert again.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED
    assert world.identity.calls["refresh"] == 1
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.status is GrantStatus.REAUTHORIZATION_REQUIRED
    assert stored.access_token is None and stored.lease_owner is None
    [dead] = world.events.of("reauthorization_required")
    assert dead.error_codes == (50173,)


async def test_a_provider_outage_is_transient_and_announced_once_per_streak() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    world.identity.fail_next(ProviderUnavailable("HTTP 503", 2.0), ProviderUnavailable("HTTP 503", 2.0))
    for _ in range(2):
        failed = await handlers.access_token(service, request())
        assert failed.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE and failed.retry_after_s == 2.0
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.status is GrantStatus.ACTIVE and stored.lease_owner is None
    recovered = await handlers.access_token(service, request())
    assert recovered.outcome is AccessTokenOutcome.GRANTED
    assert world.events.kinds() == ["refresh_failed", "recovered", "refreshed"]


async def test_a_lease_held_too_long_is_a_transient_answer() -> None:
    world = TokenWorld()
    # The waiter gives up after twice its own lease time (20 s), while the holder's lease
    # (30 s) still stands.
    holder, waiter = world.replica("replica-a"), world.replica("replica-b", lease_ttl_s=10)
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    [release] = world.identity.hold()
    on_holder = asyncio.create_task(holder.access.token(ADMIN))
    await turns(lambda: world.identity.calls["refresh"] == 1)
    reply = asyncio.create_task(handlers.access_token(waiter, request()))
    while not reply.done():
        await turns(lambda: world.clock.sleeping >= 1 or reply.done())
        world.clock.advance(1)
    answered = await reply
    assert answered.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE and answered.retry_after_s == 1.0
    assert "another replica is refreshing" in (answered.detail or "")
    assert world.identity.calls["refresh"] == 1
    release.set()
    await on_holder


async def test_no_grant_is_said_as_such() -> None:
    world = TokenWorld()
    reply = await handlers.access_token(world.replica(), request())
    assert reply.outcome is AccessTokenOutcome.NO_GRANT and "no administrator grant" in (reply.detail or "")


async def test_an_unknown_tenant_is_a_configuration_error_that_says_what_to_do() -> None:
    world = TokenWorld()
    stranger = Principal(tenant_id="t9", kind=PrincipalKind.ADMINISTRATOR, address="admin@t9.example")
    await world.signed_in(stranger)
    world.clock.advance(DUE_S)
    reply = await handlers.access_token(world.replica(), request(principal=stranger))
    assert reply.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "no tenant 't9'" in (reply.detail or "") and "fleetmail tenants set t9" in (reply.detail or "")
    stored = await world.grants.get(stranger)
    assert stored is not None and stored.status is GrantStatus.ACTIVE and stored.lease_owner is None


async def test_a_missing_app_registration_is_a_configuration_error_not_a_dead_grant() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    world.clock.advance(DUE_S)
    world.identity.fail_next(
        ConfigurationError("tenant 't1' has no Microsoft app (client) id", setting="identity.client_id")
    )
    reply = await handlers.access_token(service, request())
    assert reply.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "identity.client_id" in (reply.detail or "")
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.status is GrantStatus.ACTIVE
    assert "reauthorization_required" not in world.events.kinds()
    assert (await handlers.access_token(service, request())).outcome is AccessTokenOutcome.GRANTED


async def test_an_app_only_tenant_gets_its_grant_on_first_use_or_the_setting_to_fix() -> None:
    world = TokenWorld(tenant(identity={"app_only": True}))
    service = world.replica()
    secret = "microsoft_client_secret in the tenant's credentials"
    world.identity.fail_next(ConfigurationError("no Microsoft client secret", setting=secret))
    missing = await handlers.access_token(service, request())
    assert missing.outcome is AccessTokenOutcome.CONFIGURATION_ERROR and secret in (missing.detail or "")
    assert await world.grants.get(ADMIN) is None
    granted = await handlers.access_token(service, request())
    assert granted.outcome is AccessTokenOutcome.GRANTED and granted.access_token.startswith("fake-app-at")
    stored = await world.grants.get(ADMIN)
    assert stored is not None and stored.refresh_token is None and world.events.kinds() == ["acquired"]


async def test_an_app_only_principal_outside_the_mail_domains_gets_no_token() -> None:
    """An app-only token acts for any mailbox of the directory: a tenant that names another
    organisation's address (its administrator address, a user) gets nothing, and the
    provider is not asked."""
    world = TokenWorld(tenant(identity={"app_only": True}, mail_domains=("t1.example",)))
    service = world.replica()
    outsider = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="ceo@victim.example")
    refused = await handlers.access_token(service, request(principal=outsider))
    assert refused.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "not in the mail domains" in (refused.detail or "")
    assert world.identity.calls["app_only"] == 0 and await world.grants.get(outsider) is None
    # One stored before the rule (or before the domain left the list) is dropped, not used.
    assert (await handlers.access_token(service, request())).outcome is AccessTokenOutcome.GRANTED
    world.tenants.put(tenant(identity={"app_only": True}, mail_domains=("t2.example",)))
    gone = await handlers.access_token(service, request(force_refresh=True))
    assert gone.outcome is AccessTokenOutcome.CONFIGURATION_ERROR and await world.grants.get(ADMIN) is None


async def test_refused_app_credentials_kill_an_app_only_grant_until_new_ones_are_stored() -> None:
    world = TokenWorld(tenant(identity={"app_only": True}))
    service = world.replica()
    assert (await handlers.access_token(service, request())).outcome is AccessTokenOutcome.GRANTED
    world.clock.advance(DUE_S)
    world.identity.fail_next(ConfigurationError("invalid_client [7000215]", setting="the client secret"))
    dead = await handlers.access_token(service, request())
    assert dead.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED
    assert world.events.of("reauthorization_required")[0].error == "app_credentials_refused"
    await service.app_only.credentials_changed("t1")
    assert (await handlers.access_token(service, request())).outcome is AccessTokenOutcome.GRANTED


async def test_the_reply_for_each_error_class() -> None:
    assert handlers.refused(UnknownTenant("t9")).outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    transient = handlers.refused(ProviderUnavailable("down"))
    assert transient.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE and transient.retry_after_s == 5.0
