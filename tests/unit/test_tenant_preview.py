"""What the console says a settings change does before it is saved (`settings_consequences`,
`TenantAdministration.preview`), and the tenant form's round trip (`console.tenant_form`):
the preview follows token-service's drift rule and the notifier's sign-in prompt, refuses
what `save` refuses, and a form shows each refusal at its field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleetmail_contracts.tenants import SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import GrantStatus, GrantView, Principal, PrincipalKind, Provider
from fleetmail_contracts.transports import Transport
from job_gateway.console.routes.tokens import administrator_state
from job_gateway.console.tenant_form import (
    contract_errors,
    field_of,
    form_values,
    settings_from_form,
    use_case_errors,
)
from job_gateway.domain import Administrator, Role, token_status
from job_gateway.errors import AdministratorAddressRequired, TenantExists
from job_gateway.use_cases import TenantAdministration
from job_gateway.use_cases.tenant_preview import settings_consequences
from pydantic import ValidationError

from tests.fakes.gateway import InMemoryGatewayStore, InMemoryTenantFeed

OWNER = Administrator(key_id="owner", role=Role.OWNER, tenant_ids=None)
ADMIN = "admin@t1.example"
ON = TenantSettings(tenant_id="t1", oauth_enabled=True, administrator_address=ADMIN)


def grant(address: str, kind: PrincipalKind, status: GrantStatus = GrantStatus.ACTIVE) -> GrantView:
    return GrantView(
        principal=Principal(tenant_id="t1", kind=kind, address=address),
        provider=Provider.MICROSOFT,
        status=status,
        scopes=(),
        acquired_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


ADMIN_GRANT = grant(ADMIN, PrincipalKind.ADMINISTRATOR)
USER_GRANT = grant("jo@t1.example", PrincipalKind.USER)


def test_a_new_administrator_address_means_a_new_sign_in() -> None:
    after = ON.model_copy(update={"administrator_address": "boss@t1.example"})
    [said] = settings_consequences(ON, after, [ADMIN_GRANT, USER_GRANT])
    assert "administrator's refresh token stops working" in said
    assert "changed from admin@t1.example to boss@t1.example" in said


def test_a_new_provider_means_every_sign_in_again() -> None:
    after = ON.model_copy(update={"provider": Provider.GOOGLE})
    said = settings_consequences(ON, after, [ADMIN_GRANT, USER_GRANT])
    assert any("administrator's refresh token stops working" in s and "Google" in s for s in said)
    assert any("1 login user(s) must sign in again" in s and "jo@t1.example" in s for s in said)
    assert any("smtp.gmail.com:587" in s for s in said)


def test_a_grant_that_needs_a_sign_in_already_is_not_news() -> None:
    dead = grant(ADMIN, PrincipalKind.ADMINISTRATOR, GrantStatus.REAUTHORIZATION_REQUIRED)
    after = ON.model_copy(update={"administrator_address": "boss@t1.example"})
    assert settings_consequences(ON, after, [dead]) == []


def test_turning_oauth_on_without_a_token_raises_the_prompt() -> None:
    off = ON.model_copy(update={"oauth_enabled": False})
    [said] = settings_consequences(off, ON, [])
    assert "without an administrator token" in said and "[Acquire]" in said
    [said] = settings_consequences(off, ON, [ADMIN_GRANT])
    assert said == f"OAuth 2.0 goes ON: mail is sent with XOAUTH2 as {ADMIN}."


def test_turning_oauth_off_says_how_mail_goes_then() -> None:
    [said] = settings_consequences(ON, ON.model_copy(update={"oauth_enabled": False}), [ADMIN_GRANT])
    assert "OAuth 2.0 goes OFF" in said and "user name and password" in said


def test_an_unchanged_tenant_has_no_consequence() -> None:
    assert settings_consequences(ON, ON, [ADMIN_GRANT, USER_GRANT]) == []


def test_other_settings_are_named() -> None:
    after = ON.model_copy(
        update={
            "auto_delete": True,
            "smtp": SmtpSettings(host="mail.t1.example", port=465),
            "proxy_url": "http://p:3128",
        }
    )
    said = " ".join(settings_consequences(ON, after, []))
    assert "Auto Delete ON" in said and "mail.t1.example:465" in said and "proxy" in said


async def test_the_preview_refuses_what_save_refuses_and_saves_nothing() -> None:
    store, feed = InMemoryGatewayStore(), InMemoryTenantFeed()
    tenants = TenantAdministration(store, feed)
    await tenants.save("t1", TenantSettings(tenant_id="t1"), OWNER)
    with pytest.raises(AdministratorAddressRequired):
        await tenants.preview("t1", TenantSettings(tenant_id="t1", oauth_enabled=True), OWNER, [])
    said = await tenants.preview("t1", ON, OWNER, [])
    assert "without an administrator token" in said[0]
    assert (await tenants.get("t1")).oauth_enabled is False and feed.published["t1"].revision == 1


async def test_create_refuses_an_id_in_use_rather_than_replacing_it() -> None:
    tenants = TenantAdministration(InMemoryGatewayStore(), InMemoryTenantFeed())
    created = await tenants.create("t1", "Site one", OWNER)
    assert created.oauth_enabled is False and created.provider is Provider.MICROSOFT
    await tenants.save("t1", ON, OWNER)
    with pytest.raises(TenantExists):
        await tenants.create("t1", "", OWNER)
    assert (await tenants.get("t1")).oauth_enabled is True


def test_the_form_gives_back_the_settings_it_shows() -> None:
    tenant = ON.model_copy(
        update={
            "smtp": SmtpSettings(host="mail.t1.example", port=465, security="implicit_tls"),
            "send_as": {"jo@t1.example": ("desk@t1.example",)},
            "mail_domains": ("t1.example",),
            "auto_delete": True,
            "proxy_url": "http://proxy.t1.example:3128",
            "transport": Transport.GRAPH,
        }
    )
    assert settings_from_form("t1", form_values(tenant), lists_mail_domains=True) == tenant


def test_the_proxys_password_is_never_shown_and_stays_when_sent_back_as_shown() -> None:
    stored = "http://fleet:s3cret@proxy.t1.example:3128"
    tenant = ON.model_copy(update={"proxy_url": stored})
    values = form_values(tenant)
    assert "s3cret" not in values["proxy_url"] and "proxy.t1.example:3128" in values["proxy_url"]
    kept = settings_from_form("t1", values, lists_mail_domains=True, stored_proxy_url=stored)
    assert kept.proxy_url == stored
    changed = values | {"proxy_url": "http://other:pw@proxy2.t1.example:3128"}
    assert (
        settings_from_form("t1", changed, True, stored).proxy_url == "http://other:pw@proxy2.t1.example:3128"
    )


def test_a_field_the_contract_refuses_is_named_by_its_form_field() -> None:
    values = form_values(ON) | {
        "smtp_host": "mail.t1.example",
        "smtp_port": "70000",
        "limit_daily_quota": "0",
    }
    with pytest.raises(ValidationError) as refused:
        settings_from_form("t1", values, lists_mail_domains=False)
    assert set(contract_errors(refused.value)) == {"smtp_port", "limit_daily_quota"}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("smtp.host", "smtp_host"),
        ("notifications.webhooks[0].url", "webhooks"),
        ("notifications.email_recipients[2]", "email_recipients"),
        ("identity.authority_host", "identity_authority_host"),
        ("sending_limits.daily_quota", "limit_daily_quota"),
        ("proxy_url", "proxy_url"),
        ("send_as['jo@t1.example']", "send_as"),
    ],
)
def test_a_setting_path_names_its_form_field(path: str, field: str) -> None:
    assert field_of(path) == field


def test_a_use_case_refusal_is_split_by_field() -> None:
    found = use_case_errors("smtp.host: '127.0.0.1' is a loopback address; proxy_url: not a URL")
    assert found == {"smtp_host": ["'127.0.0.1' is a loopback address"], "proxy_url": ["not a URL"]}
    assert use_case_errors("the request is wrong") == {"form": ["the request is wrong"]}


def test_a_port_without_a_server_is_refused_at_the_server_not_dropped() -> None:
    with pytest.raises(ValidationError) as refused:
        settings_from_form("t1", form_values(ON) | {"smtp_port": "2525"}, lists_mail_domains=False)
    assert set(contract_errors(refused.value)) == {"smtp_host"}


@pytest.mark.parametrize(
    ("grants", "key", "words"),
    [
        ([], "not_acquired", "Not acquired"),
        ([ADMIN_GRANT], "acquired", "Acquired"),
        (
            [ADMIN_GRANT.model_copy(update={"predicted_death_at": datetime(2026, 12, 4, 12, tzinfo=UTC)})],
            "expiring",
            "Expiring on 2026-12-04, 3 days left",
        ),
        (
            [ADMIN_GRANT.model_copy(update={"predicted_death_at": datetime(2027, 2, 1, tzinfo=UTC)})],
            "acquired",
            "Acquired",
        ),
        (
            [grant(ADMIN, PrincipalKind.ADMINISTRATOR, GrantStatus.REVOKED)],
            "reauthorization_required",
            "Re-authorization needed",
        ),
    ],
)
def test_the_administrator_token_is_worded_as_on_the_overview(
    grants: list[GrantView], key: str, words: str
) -> None:
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    state = administrator_state(token_status(ON, grants), now)
    assert (state.key, state.words) == (key, words)
