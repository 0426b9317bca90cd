"""The device's defaults and states, as fleetmail keeps them: OAuth 2.0 off, provider
Microsoft, the provider's SMTP server (smtp.office365.com:587 / smtp.gmail.com:587, STARTTLS),
Auto Delete disabled; OAuth 2.0 is on only with the administrator's address; and the
administrator's [Refresh Tokens] row reads "Not acquired" until [Acquire] succeeded. The same
through the running API in tests/integration/test_tenant_defaults.py; TLS 1.2-1.3 in
tests/component/test_tls_versions.py, and the SMTP listener never set TLS 1.3-only here. Jobs
that wait for the administrator's first [Acquire] wait 24 hours by default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleetmail_contracts.tenants import FromPolicy, SmtpSecurity, SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import GrantStatus, GrantView, Principal, PrincipalKind, Provider
from fleetmail_runtime.identity_endpoints import DEFAULT_IDENTITY_ORIGINS
from job_gateway.domain import Administrator, Role, token_status
from job_gateway.errors import AdministratorAddressRequired
from job_gateway.settings import GatewaySettings
from job_gateway.use_cases import TenantAdministration
from mail_service.settings import MailSettings
from pydantic import ValidationError

from tests.fakes.gateway import InMemoryGatewayStore, InMemoryTenantFeed

OWNER = Administrator(key_id="owner", role=Role.OWNER, tenant_ids=None)
ADMIN = "admin@t1.example"


def test_a_new_tenant_has_the_devices_defaults() -> None:
    tenant = TenantSettings(tenant_id="t1")
    assert tenant.oauth_enabled is False
    assert tenant.provider is Provider.MICROSOFT
    assert tenant.auto_delete is False
    assert tenant.from_policy is FromPolicy.ADMINISTRATOR_ADDRESS
    assert tenant.smtp is None and tenant.proxy_url is None


@pytest.mark.parametrize(
    ("provider", "host"), [(Provider.MICROSOFT, "smtp.office365.com"), (Provider.GOOGLE, "smtp.gmail.com")]
)
def test_without_an_smtp_server_the_providers_own_is_used(provider: Provider, host: str) -> None:
    server = TenantSettings(tenant_id="t1", provider=provider).effective_smtp()
    assert (server.host, server.port, server.security) == (host, 587, SmtpSecurity.STARTTLS)
    own = SmtpSettings(host="smtp.internal.example", port=25, security=SmtpSecurity.NONE)
    assert TenantSettings(tenant_id="t1", provider=provider, smtp=own).effective_smtp() == own


def administration() -> tuple[TenantAdministration, InMemoryTenantFeed]:
    feed = InMemoryTenantFeed()
    return TenantAdministration(InMemoryGatewayStore(), feed, DEFAULT_IDENTITY_ORIGINS), feed


@pytest.mark.parametrize("address", [None, "", "   "])
async def test_oauth_on_without_the_administrators_address_is_refused_and_nothing_kept(
    address: str | None,
) -> None:
    tenants, feed = administration()
    settings = TenantSettings(tenant_id="t1", oauth_enabled=True, administrator_address=address)
    with pytest.raises(AdministratorAddressRequired, match="administrator_address"):
        await tenants.save("t1", settings, OWNER)
    assert feed.published == {}


async def test_oauth_off_needs_no_address_and_on_with_one_is_kept() -> None:
    tenants, feed = administration()
    await tenants.save("t1", TenantSettings(tenant_id="t1"), OWNER)
    on = TenantSettings(tenant_id="t1", oauth_enabled=True, administrator_address=ADMIN)
    assert (await tenants.save("t1", on, OWNER)).oauth_enabled
    assert feed.published["t1"].administrator_address == ADMIN


def grant(address: str, kind: PrincipalKind, status: GrantStatus = GrantStatus.ACTIVE) -> GrantView:
    return GrantView(
        principal=Principal(tenant_id="t1", kind=kind, address=address),
        provider=Provider.MICROSOFT,
        status=status,
        scopes=(),
        acquired_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


TENANT = TenantSettings(tenant_id="t1", oauth_enabled=True, administrator_address=ADMIN)


@pytest.mark.parametrize(
    ("grants", "shown"),
    [
        ([], "not_acquired"),
        ([grant("jo@t1.example", PrincipalKind.USER)], "not_acquired"),
        ([grant("old-admin@t1.example", PrincipalKind.ADMINISTRATOR)], "not_acquired"),
        ([grant("Admin@T1.example", PrincipalKind.ADMINISTRATOR)], "acquired"),
        (
            [grant(ADMIN, PrincipalKind.ADMINISTRATOR, GrantStatus.REAUTHORIZATION_REQUIRED)],
            "reauthorization_required",
        ),
    ],
)
def test_the_administrators_row_is_always_shown(grants: list[GrantView], shown: str) -> None:
    status = token_status(TENANT, grants)
    assert status.administrator.address == ADMIN and status.administrator.status == shown
    assert list(status.grants) == grants


def test_without_an_administrator_address_the_row_says_not_acquired() -> None:
    status = token_status(TenantSettings(tenant_id="t1"), [])
    assert status.administrator.address is None and status.administrator.status == "not_acquired"


def test_the_smtp_listener_is_never_tls_1_3_only() -> None:
    """Devices negotiate TLS 1.2 or 1.3: a listener pinned to 1.3 would refuse the 1.2 ones."""
    assert GatewaySettings().smtp_min_tls == "1.2"
    with pytest.raises(ValidationError, match=r"TLS 1\.3-only"):
        GatewaySettings(smtp_min_tls="1.3")
    assert GatewaySettings(smtp_min_tls="1.0").smtp_min_tls == "1.0"  # old devices, warned


def test_jobs_wait_a_day_for_the_administrators_first_acquire_by_default() -> None:
    assert MailSettings().administrator_wait_s == 24 * 3600
