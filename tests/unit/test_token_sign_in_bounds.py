"""Sign-ins stay within their tenant (issue 18, defect 4), with fakes and a clock the test
moves: an address outside the tenant's mail domains is refused before any identity provider
is asked, and a Microsoft sign-in from another directory than the tenant's stores nothing."""

from __future__ import annotations

from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionState,
    Principal,
    PrincipalKind,
    StartAcquisition,
)
from token_service import handlers

from tests.fakes.token import TokenWorld, tenant, turns

DIRECTORY = "8f0c5a52-1f8e-4c1e-9a55-3b0e2f1d7c10"
OTHER_DIRECTORY = "3b1d2c4e-0000-4000-8000-0000000000aa"
INTERVAL_S = 5


def user(address: str, tenant_id: str = "t1") -> Principal:
    return Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=address)


async def test_a_sign_in_outside_the_tenants_mail_domains_never_reaches_the_provider() -> None:
    world = TokenWorld(tenant(mail_domains=("contoso.example",)))
    service = world.replica()
    for flow in (AcquisitionFlow.DEVICE_CODE, AcquisitionFlow.AUTHORIZATION_CODE):
        request = StartAcquisition(
            principal=user("ceo@fabrikam.example"), flow=flow, redirect_uri="https://gw/oauth/callback"
        )
        started = await handlers.start_acquisition(service, request)
        assert started.state is AcquisitionState.FAILED
        assert "not in the mail domains of tenant 't1' (contoso.example)" in (started.error or "")
    # The administrator address is held to the same rule: its domain is not listed either.
    admin = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")
    refused = await handlers.start_acquisition(service, StartAcquisition(principal=admin))
    assert refused.state is AcquisitionState.FAILED and "mail domains" in (refused.error or "")
    assert sum(world.identity.calls.values()) == 0

    started = await handlers.start_acquisition(
        service, StartAcquisition(principal=user("anna@Contoso.example"))
    )
    assert started.state is AcquisitionState.PENDING and world.identity.calls["start_device_flow"] == 1
    await service.close()


async def test_a_tenant_without_a_list_keeps_its_administrators_domain() -> None:
    world = TokenWorld()  # saved before mail_domains existed: admin@t1.example
    service = world.replica()
    ok = await handlers.start_acquisition(service, StartAcquisition(principal=user("bo@t1.example")))
    assert ok.state is AcquisitionState.PENDING
    refused = await handlers.start_acquisition(service, StartAcquisition(principal=user("bo@t2.example")))
    assert refused.state is AcquisitionState.FAILED
    await service.close()


async def device_sign_in(world: TokenWorld, principal: Principal, signs_in_as: str) -> AcquisitionState:
    service = world.replica()
    started = await service.acquirer.start(StartAcquisition(principal=principal))
    world.identity.approve(started.user_code or "", signs_in_as)
    await turns(lambda: world.clock.sleeping == 1)
    world.clock.advance(INTERVAL_S)
    await turns(lambda: not service.device_codes.polling())
    return (await service.acquirer.status(started.acquisition_id, principal.tenant_id)).state


async def test_a_microsoft_sign_in_from_another_directory_stores_nothing() -> None:
    world = TokenWorld(tenant(mail_domains=("contoso.example",), identity={"directory": DIRECTORY}))
    world.identity.directories["contoso.example"] = OTHER_DIRECTORY
    anna = user("anna@contoso.example")
    assert await device_sign_in(world, anna, anna.address) is AcquisitionState.FAILED
    assert await world.grants.get(anna) is None and world.events.of("acquired") == []

    world.identity.directories["contoso.example"] = DIRECTORY
    assert await device_sign_in(world, anna, anna.address) is AcquisitionState.SUCCEEDED
    assert await world.grants.get(anna) is not None


async def test_a_domain_unlisted_while_the_person_signs_in_stores_nothing() -> None:
    world = TokenWorld(tenant(mail_domains=("contoso.example",)))
    service = world.replica()
    anna = user("anna@contoso.example")
    started = await service.acquirer.start(StartAcquisition(principal=anna))
    world.tenants.put(tenant(mail_domains=("fabrikam.example",)))
    world.identity.approve(started.user_code or "", anna.address)
    await turns(lambda: world.clock.sleeping == 1)
    world.clock.advance(INTERVAL_S)
    await turns(lambda: not service.device_codes.polling())
    status = await service.acquirer.status(started.acquisition_id, "t1")
    assert status.state is AcquisitionState.FAILED and "mail domains" in (status.detail or "")
    assert await world.grants.get(anna) is None
