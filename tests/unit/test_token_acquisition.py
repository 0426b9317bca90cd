"""Acquisition with fakes and a clock the test moves: a device-code sign-in is polled by one
replica and taken over by another only once the grace after a missed poll has passed; an
authorization-code answer is redeemed once, for the right account."""

from __future__ import annotations

from datetime import timedelta

from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenRequest,
    AcquisitionFlow,
    AcquisitionState,
    CompleteAuthorization,
    Principal,
    PrincipalKind,
    Provider,
    StartAcquisition,
)
from token_service import handlers

from tests.fakes.token import TokenWorld, tenant, turns

ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")
INTERVAL_S = 5  # the fake device flow's polling interval
GRACE_S = 10  # TokenWorld's device_poll_grace_s


async def orphan(world: TokenWorld, acquisition_id: str = "acq-1") -> dict:
    """A device-code sign-in whose polling replica died just after its last renewal."""
    flow = await world.identity.start_device_flow(await world.tenants.get("t1"))
    await world.acquisitions.create(
        acquisition_id,
        ADMIN,
        Provider.MICROSOFT,
        AcquisitionFlow.DEVICE_CODE,
        world.clock() + timedelta(seconds=900),
        flow=flow,
        poller=("dead-replica", world.clock() + timedelta(seconds=INTERVAL_S + GRACE_S)),
    )
    return flow


async def test_an_orphaned_sign_in_is_taken_over_only_after_the_grace() -> None:
    world = TokenWorld()
    heir = world.replica("replica-b")
    flow = await orphan(world)
    world.clock.advance(INTERVAL_S + GRACE_S - 1)
    await heir.device_codes.adopt_orphans()
    assert heir.device_codes.polling() == [] and world.acquisitions.poller_of("acq-1") == "dead-replica"
    world.clock.advance(2)
    await heir.device_codes.adopt_orphans()
    assert heir.device_codes.polling() == ["acq-1"] and world.acquisitions.poller_of("acq-1") == "replica-b"

    # The user finishes signing in after the replica died; the heir's next poll finds it.
    world.identity.approve(flow["user_code"], ADMIN.address)
    await turns(lambda: world.clock.sleeping == 1)
    world.clock.advance(INTERVAL_S)
    await turns(lambda: heir.device_codes.polling() == [])
    status = await heir.acquirer.status("acq-1", "t1")
    assert status.state is AcquisitionState.SUCCEEDED
    reply = await handlers.access_token(heir, AccessTokenRequest(principal=ADMIN))
    assert reply.outcome is AccessTokenOutcome.GRANTED and world.identity.calls["refresh"] == 0
    assert world.events.of("acquired")[0].flow is AcquisitionFlow.DEVICE_CODE


async def test_a_live_poller_keeps_its_sign_in_and_hands_it_over_when_it_stops() -> None:
    world = TokenWorld()
    poller, other = world.replica("replica-a"), world.replica("replica-b")
    started = await poller.acquirer.start(StartAcquisition(principal=ADMIN))
    assert (
        started.flow is AcquisitionFlow.DEVICE_CODE and started.user_code and started.interval_s == INTERVAL_S
    )
    for _ in range(10):  # fifty seconds of polling: every poll renews the claim
        await turns(lambda: world.clock.sleeping == 1)
        world.clock.advance(INTERVAL_S)
        await other.device_codes.adopt_orphans()
        assert other.device_codes.polling() == []
    assert world.identity.calls["poll_device_flow"] >= 9
    await poller.close()  # shutting down: the sign-in is handed over at once
    world.clock.advance(0.001)
    await other.device_codes.adopt_orphans()
    assert other.device_codes.polling() == [started.acquisition_id]
    await other.close()


async def test_a_device_code_sign_in_expires_when_nobody_signs_in() -> None:
    world = TokenWorld()
    service = world.replica()
    started = await service.acquirer.start(StartAcquisition(principal=ADMIN))
    while service.device_codes.polling():
        await turns(lambda: world.clock.sleeping == 1 or not service.device_codes.polling())
        world.clock.advance(INTERVAL_S)
    status = await service.acquirer.status(started.acquisition_id, "t1")
    assert status.state is AcquisitionState.EXPIRED and "start again" in (status.detail or "")
    assert await world.grants.get(ADMIN) is None


async def test_a_device_code_sign_in_with_the_wrong_account_stores_nothing() -> None:
    world = TokenWorld()
    service = world.replica()
    started = await service.acquirer.start(StartAcquisition(principal=ADMIN))
    world.identity.approve(started.user_code or "", "someone@else.example")
    await turns(lambda: world.clock.sleeping == 1)
    world.clock.advance(INTERVAL_S)
    await turns(lambda: not service.device_codes.polling())
    status = await service.acquirer.status(started.acquisition_id, "t1")
    assert status.state is AcquisitionState.FAILED and "signed in as someone@else.example" in (
        status.detail or ""
    )
    assert await world.grants.get(ADMIN) is None and world.events.published == []


async def test_an_authorization_answer_is_redeemed_once_for_the_principal_who_started_it() -> None:
    world = TokenWorld()
    service = world.replica()
    started = await service.acquirer.start(
        StartAcquisition(
            principal=ADMIN, flow=AcquisitionFlow.AUTHORIZATION_CODE, redirect_uri="https://gw.example/cb"
        )
    )
    state = (started.authorization_url or "").split("state=")[1]
    code = world.identity.authorize(ADMIN.address)
    done = await service.acquirer.complete(CompleteAuthorization(state=state, code=code))
    assert done.state is AcquisitionState.SUCCEEDED and done.principal == ADMIN
    replayed = await service.acquirer.complete(CompleteAuthorization(state=state, code=code))
    assert replayed.state is AcquisitionState.FAILED and "already used or has expired" in (
        replayed.detail or ""
    )
    assert (await service.acquirer.status(started.acquisition_id, "t1")).state is AcquisitionState.SUCCEEDED
    assert world.identity.calls["redeem_authorization"] == 1


async def test_an_authorization_answer_after_its_time_is_refused() -> None:
    world = TokenWorld()
    service = world.replica()
    started = await service.acquirer.start(
        StartAcquisition(
            principal=ADMIN, flow=AcquisitionFlow.AUTHORIZATION_CODE, redirect_uri="https://gw/cb"
        )
    )
    state = (started.authorization_url or "").split("state=")[1]
    world.clock.advance(world.settings.acquisition_ttl_s + 1)
    late = await service.acquirer.complete(
        CompleteAuthorization(state=state, code=world.identity.authorize(ADMIN.address))
    )
    assert late.state is AcquisitionState.FAILED and world.identity.calls["redeem_authorization"] == 0


async def test_acquisitions_that_cannot_start_say_why() -> None:
    world = TokenWorld(tenant("t1"), tenant("g1", provider=Provider.GOOGLE))
    service = world.replica()
    stranger = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="intern@t1.example")
    google = Principal(tenant_id="g1", kind=PrincipalKind.ADMINISTRATOR, address="admin@g1.example")
    cases = [
        (StartAcquisition(principal=stranger), "not the registered administrator address"),
        (StartAcquisition(principal=google), "device flow cannot carry the Gmail scope"),
        (StartAcquisition(principal=ADMIN, flow=AcquisitionFlow.APP_ONLY), "identity.app_only"),
        (StartAcquisition(principal=ADMIN, flow=AcquisitionFlow.AUTHORIZATION_CODE), "redirect URI"),
    ]
    for request, reason in cases:
        started = await handlers.start_acquisition(service, request)
        assert started.state is AcquisitionState.FAILED and reason in (started.error or ""), started
