"""Tenant settings job-gateway refuses (issue 18): identity endpoints off the operator's
allowlist (422), and mail domains listed by any key but the owner's (403). A tenant saved
before mail domains existed keeps its administrator address's domain, frozen at its first
save, so a fleet administrator cannot bring a new domain in through a new address."""

import pytest
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.identity_endpoints import DEFAULT_IDENTITY_ORIGINS
from job_gateway.domain import Administrator, Role
from job_gateway.errors import Forbidden, IdentityEndpointRefused, InvalidAddress
from job_gateway.use_cases import TenantAdministration

from tests.fakes.gateway import InMemoryGatewayStore, InMemoryTenantFeed

OWNER = Administrator(key_id="owner", role=Role.OWNER, tenant_ids=None)
FLEET_ADMIN = Administrator(key_id="k1", role=Role.FLEET_ADMIN, tenant_ids=("b",))


def administration() -> tuple[TenantAdministration, InMemoryTenantFeed, InMemoryGatewayStore]:
    store, feed = InMemoryGatewayStore(), InMemoryTenantFeed()
    return TenantAdministration(store, feed, DEFAULT_IDENTITY_ORIGINS), feed, store


def settings(**fields: object) -> TenantSettings:
    return TenantSettings.model_validate(
        {"tenant_id": "b", "administrator_address": "admin@b.example", **fields}
    )


@pytest.mark.parametrize(
    "identity",
    [
        {"authority_host": "https://idp.attacker.example"},
        {"authority_host": "http://login.microsoftonline.com"},
        {"token_uri": "https://oauth2.googleapis.com.attacker.example/token"},
        {"directory": "contoso.example/../oauth2"},
        {"directory": "organizations?x=1"},
        {"directory": "fabrikam"},
    ],
)
async def test_an_identity_endpoint_off_the_allowlist_is_refused_and_nothing_published(
    identity: dict,
) -> None:
    tenants, feed, _ = administration()
    with pytest.raises(IdentityEndpointRefused, match="not"):
        await tenants.save("b", settings(identity=identity), FLEET_ADMIN)
    assert feed.published == {}
    saved = await tenants.save(
        "b", settings(identity={"authority_host": "https://login.microsoftonline.us"}), FLEET_ADMIN
    )
    assert saved.identity.authority_host == "https://login.microsoftonline.us"


async def test_only_the_owner_lists_mail_domains() -> None:
    tenants, feed, _ = administration()
    created = await tenants.save("b", settings(), FLEET_ADMIN)
    assert created.mail_domains == ()  # a fleet administrator's new tenant: the owner lists them
    with pytest.raises(Forbidden, match="only the owner key"):
        await tenants.save("b", settings(mail_domains=["victim.example"]), FLEET_ADMIN)
    listed = await tenants.save("b", settings(mail_domains=["b.example"]), OWNER)
    assert listed.mail_domains == ("b.example",) and feed.published["b"].mail_domains == ("b.example",)
    # A fleet administrator's save keeps them, whether it names them unchanged or not at all.
    kept = await tenants.save("b", settings(display_name="B", mail_domains=["B.example"]), FLEET_ADMIN)
    assert kept.mail_domains == ("b.example",)
    assert (await tenants.save("b", settings(), FLEET_ADMIN)).mail_domains == ("b.example",)
    # The owner's new tenant without a list gets its administrator's domain.
    assert (await tenants.save("c", settings(tenant_id="c"), OWNER)).mail_domains == ("b.example",)


async def test_a_legacy_tenant_keeps_its_administrators_domain_not_a_new_one() -> None:
    tenants, _, store = administration()
    await store.save_tenant(settings(revision=3))  # saved before mail_domains existed
    moved = await tenants.save("b", settings(administrator_address="ceo@victim.example"), FLEET_ADMIN)
    assert moved.mail_domains == ("b.example",) and not moved.accepts_sign_in("ceo@victim.example")


async def test_send_as_addresses_are_the_tenants_own_and_nothing_else_is_saved() -> None:
    """Under [Allow] a login user sends as what send_as lists for them: an address of another
    tenant's (or anyone's) domain there would let the fleet send as it."""
    tenants, feed, store = administration()
    for send_as in (
        {"ann@b.example": ["ceo@tenant-c.example"]},
        {"someone@elsewhere.example": ["scans@b.example"]},
    ):
        with pytest.raises(InvalidAddress, match="not in the tenant's mail domains"):
            await tenants.save("b", settings(send_as=send_as), OWNER)
    assert await store.tenant("b") is None and feed.published == {}
    saved = await tenants.save("b", settings(send_as={"ann@b.example": ["scans@B.example"]}), OWNER)
    assert saved.send_as == {"ann@b.example": ("scans@b.example",)}
