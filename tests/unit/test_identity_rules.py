"""The pure rules behind issue 18's defects 3 and 4: which identity endpoints a tenant may
name, which addresses may sign in for a tenant, which directory a Microsoft sign-in must
come from, and where a grant may be redeemed."""

import pytest
from fleetmail_contracts.tenants import TenantSettings, mail_domain
from fleetmail_runtime.identity_endpoints import (
    DEFAULT_IDENTITY_ORIGINS,
    authority_host_refusal,
    directory_name_refusal,
    endpoint_refusal,
)
from fleetmail_runtime.settings import CommonSettings
from pydantic import ValidationError
from token_service.domain import directory_refusal, grant_bound_to

EMULATOR = "https://127.0.0.1:8443"
ALLOWED = (*DEFAULT_IDENTITY_ORIGINS, EMULATOR)
DIRECTORY = "8f0c5a52-1f8e-4c1e-9a55-3b0e2f1d7c10"


@pytest.mark.parametrize(
    "url",
    [
        "https://login.microsoftonline.com",
        "https://LOGIN.microsoftonline.com/",
        "https://login.microsoftonline.us",
        "https://login.chinacloudapi.cn",
        "https://login.microsoftonline.com:443",
        EMULATOR,
    ],
)
def test_the_clouds_microsoft_runs_and_the_operators_own_are_allowed(url: str) -> None:
    assert authority_host_refusal(url, ALLOWED) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://evil.example", "not an identity provider this deployment allows"),
        ("https://login.microsoftonline.com.evil.example", "not an identity provider"),
        ("https://evil.example#@login.microsoftonline.com", "without credentials"),
        ("https://login.microsoftonline.com@evil.example", "without credentials"),
        ("https://user:pw@login.microsoftonline.com", "without credentials"),
        ("http://login.microsoftonline.com", "not https"),
        ("https://login.microsoftonline.com:8443", "not an identity provider"),
        ("https://127.0.0.1:9443", "not an identity provider"),
        ("https://login.microsoftonline.de", "not an identity provider"),  # retired in 2021
        ("login.microsoftonline.com", "not an absolute URL"),
        ("https://login.microsoftonline.com/evil-tenant", "without a path"),
    ],
)
def test_other_hosts_plain_http_and_smuggled_hosts_are_refused(url: str, why: str) -> None:
    refusal = authority_host_refusal(url, ALLOWED)
    assert refusal is not None and why in refusal


def test_a_token_endpoint_may_have_a_path_on_an_allowed_origin_only() -> None:
    assert endpoint_refusal("https://oauth2.googleapis.com/token", ALLOWED) is None
    assert endpoint_refusal(f"{EMULATOR}/token", ALLOWED) is None
    assert endpoint_refusal("https://oauth2.googleapis.com/token?x=1", ALLOWED) is not None
    assert endpoint_refusal("https://oauth2.googleapis.evil.example/token", ALLOWED) is not None


def test_the_allowlist_is_the_operators_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().identity_allowed_origins == DEFAULT_IDENTITY_ORIGINS
    monkeypatch.setenv("FLEETMAIL_IDENTITY_ALLOWED_ORIGINS", f'["{EMULATOR}"]')
    assert CommonSettings().identity_allowed_origins == (EMULATOR,)


def test_sign_ins_are_for_the_tenants_mail_domains_only() -> None:
    tenant = TenantSettings(tenant_id="a", mail_domains=("Contoso.example", "sales.contoso.example."))
    assert tenant.mail_domains == ("contoso.example", "sales.contoso.example")
    assert tenant.accepts_sign_in("Anna@CONTOSO.example")
    assert tenant.accepts_sign_in("bo@sales.contoso.example")
    assert not tenant.accepts_sign_in("ceo@fabrikam.example")
    assert not tenant.accepts_sign_in("x@evil.contoso.example")  # a subdomain is listed or not
    assert not tenant.accepts_sign_in("contoso.example")
    assert not tenant.accepts_sign_in("a@fabrikam.example@contoso.example.evil")
    with pytest.raises(ValidationError):
        TenantSettings(tenant_id="a", mail_domains=("*",))


def test_a_tenant_saved_before_the_list_existed_accepts_its_administrators_domain() -> None:
    legacy = TenantSettings(tenant_id="a", administrator_address="admin@contoso.example")
    assert legacy.mail_domains is None and legacy.effective_mail_domains() == ("contoso.example",)
    assert legacy.accepts_sign_in("user@contoso.example")
    assert not legacy.accepts_sign_in("user@fabrikam.example")
    # Nothing listed and no administrator: nobody signs in until the owner lists domains.
    assert not TenantSettings(tenant_id="a").accepts_sign_in("user@contoso.example")
    assert not TenantSettings(tenant_id="a", mail_domains=()).accepts_sign_in("admin@contoso.example")
    assert mail_domain("a@B.example") == "b.example" and mail_domain("nobody") == ""


def test_a_microsoft_sign_in_must_come_from_the_configured_directory_id() -> None:
    assert directory_refusal({"tid": DIRECTORY.upper()}, DIRECTORY) is None
    refusal = directory_refusal({"tid": "00000000-0000-0000-0000-000000000001"}, DIRECTORY)
    assert refusal is not None and DIRECTORY in refusal
    assert directory_refusal({}, DIRECTORY) is not None
    # A directory named by domain or alias is Entra's to enforce: not compared here.
    assert directory_refusal({"tid": "anything"}, "organizations") is None
    assert directory_refusal({"tid": "anything"}, "contoso.example") is None
    assert directory_refusal({"tid": "anything"}, None) is None


def test_a_grant_is_redeemed_only_where_it_was_issued() -> None:
    authority = "https://login.microsoftonline.com/contoso"
    assert grant_bound_to(authority, "app", authority + "/", "app")
    assert not grant_bound_to(authority, "app", "https://login.microsoftonline.us/contoso", "app")
    assert not grant_bound_to(authority, "app", "https://login.microsoftonline.com/fabrikam", "app")
    assert not grant_bound_to(authority, "app", authority, "another-app")
    # Grants stored before the authority was recorded belong to the tenant's current settings.
    assert grant_bound_to(None, None, authority, "app")
    assert not grant_bound_to(None, "app", authority, "another-app")


@pytest.mark.parametrize(
    "directory",
    [DIRECTORY, DIRECTORY.upper(), "contoso.onmicrosoft.com", "organizations", "common", "consumers"],
)
def test_a_directory_is_an_id_a_domain_or_an_alias(directory: str) -> None:
    assert directory_name_refusal(directory) is None


@pytest.mark.parametrize(
    "directory",
    [
        "",
        "contoso",
        "contoso.example/../x",
        "organizations/",
        "common?x=1",
        "a b.example",
        "%2e%2e",
        "..",
        "x.example#",
    ],
)
def test_any_other_directory_is_refused(directory: str) -> None:
    assert "is not a directory id" in (directory_name_refusal(directory) or "")
