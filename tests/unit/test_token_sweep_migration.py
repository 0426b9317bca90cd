"""What the keep-alive sweep (and the first refresh) does for grants taken before issue 18's
rules existed, with fakes and a clock the test moves: a grant outside its tenant's mail
domains is marked as needing a new sign-in, without a call; a grant stored without its
authority is stamped with its tenant's current one, once, and is held to it from then on."""

from __future__ import annotations

from datetime import timedelta

from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenRequest,
    AcquisitionFlow,
    GrantStatus,
    Principal,
    PrincipalKind,
)
from token_service import handlers
from token_service.model import IssuedToken

from tests.fakes.token import TokenWorld, tenant

ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")
USER = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="scan.user@t1.example")
OUTSIDER = Principal(tenant_id="t1", kind=PrincipalKind.USER, address="ceo@victim.example")
LISTED = tenant(mail_domains=("t1.example",))


async def legacy_grant(world: TokenWorld, principal: Principal, client_id: str | None = None) -> None:
    """A grant as the first release stored it: no authority (and no client id)."""
    result = world.identity.sign_in(principal.address)
    now = world.clock()
    issued = IssuedToken(result.access_token, now, now + timedelta(hours=1), result.refresh_token)
    await world.grants.replace(
        principal, LISTED.provider, issued, (), AcquisitionFlow.DEVICE_CODE, None, client_id, None
    )


async def status(world: TokenWorld, principal: Principal) -> GrantStatus | None:
    stored = await world.grants.get(principal)
    return None if stored is None else stored.status


async def test_the_sweep_marks_grants_outside_the_mail_domains_without_a_call() -> None:
    world = TokenWorld(LISTED)
    service = world.replica()
    for principal in (ADMIN, USER, OUTSIDER):
        await world.signed_in(principal)  # taken before sign-ins were held to the domains
    await service.keepalive.sweep()
    assert await status(world, OUTSIDER) is GrantStatus.REAUTHORIZATION_REQUIRED
    assert (
        await status(world, ADMIN) is GrantStatus.ACTIVE and await status(world, USER) is GrantStatus.ACTIVE
    )
    [dead] = world.events.of("reauthorization_required")
    assert dead.principal == OUTSIDER and dead.error == "outside_mail_domains"
    assert "not in the mail domains of tenant 't1'" in (dead.detail or "")
    assert world.identity.calls["refresh"] == 0
    reply = await handlers.access_token(service, AccessTokenRequest(principal=OUTSIDER, force_refresh=True))
    assert (
        reply.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED and world.identity.calls["refresh"] == 0
    )

    # The administrator's domain leaves the list (the owner changed it): the next sweep marks it.
    world.tenants.put(tenant(mail_domains=("elsewhere.example",)))
    world.clock.advance(3600)
    await service.keepalive.sweep()
    assert await status(world, ADMIN) is GrantStatus.REAUTHORIZATION_REQUIRED
    assert {e.error for e in world.events.of("reauthorization_required")} == {"outside_mail_domains"}


async def test_a_grant_without_an_authority_is_stamped_at_the_first_sweep_and_held_to_it() -> None:
    world = TokenWorld(LISTED)
    service = world.replica()
    await legacy_grant(world, USER)
    await service.keepalive.sweep()
    stamped = await world.grants.get(USER)
    assert stamped is not None and stamped.status is GrantStatus.ACTIVE
    assert (stamped.authority, stamped.client_id) == ("https://login.fake/directory", "fake-client")
    assert world.identity.calls["refresh"] == 0  # stamping calls nobody

    # Before the stamp, a change of directory carried the grant along; now it asks for a sign-in.
    world.tenants.put(
        tenant(mail_domains=("t1.example",), identity={"directory": "fabrikam.onmicrosoft.com"})
    )
    await service.keepalive.sweep()
    assert await status(world, USER) is GrantStatus.REAUTHORIZATION_REQUIRED
    assert [e.error for e in world.events.of("reauthorization_required")] == ["identity_settings_changed"]


async def test_a_grant_without_an_authority_is_stamped_at_its_first_refresh() -> None:
    world = TokenWorld(LISTED)
    service = world.replica()
    await legacy_grant(world, USER, client_id="fake-client")
    world.clock.advance(3000)  # the access token falls due
    reply = await handlers.access_token(service, AccessTokenRequest(principal=USER, force_refresh=True))
    assert reply.outcome is AccessTokenOutcome.GRANTED and world.identity.calls["refresh"] == 1
    stamped = await world.grants.get(USER)
    assert stamped is not None and stamped.authority == "https://login.fake/directory"


async def test_a_grant_of_another_client_is_not_stamped_and_needs_a_sign_in() -> None:
    world = TokenWorld(LISTED)
    service = world.replica()
    await legacy_grant(world, USER, client_id="an-older-app")
    await service.keepalive.sweep()
    stored = await world.grants.get(USER)
    assert stored is not None and stored.authority is None
    assert stored.status is GrantStatus.REAUTHORIZATION_REQUIRED
    assert [e.error for e in world.events.of("reauthorization_required")] == ["identity_settings_changed"]
