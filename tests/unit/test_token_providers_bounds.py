"""Which app and endpoint a tenant's tokens come from (issue 18, defect 3), decided before
any call: the service's client secret goes only with the service's client id to the
service's endpoint, a tenant endpoint off the allowlist is a configuration error, and a
grant is redeemed only where it was issued. Nothing here reaches the network: each refusal
comes before the first request."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleetmail_contracts.tenants import IdentitySettings, TenantSettings
from fleetmail_contracts.tokens import AcquisitionFlow, GrantStatus, Principal, PrincipalKind, Provider
from pydantic import SecretStr
from token_service.adapters.credentials import TenantSecrets
from token_service.errors import ConfigurationError, ReauthorizationRequired
from token_service.model import StoredGrant
from token_service.providers import Providers
from token_service.settings import TokenSettings

from tests.fakes.token import InMemoryCredentials

SERVICE_SECRET = "service-wide-secret"
SETTINGS = TokenSettings(
    microsoft_client_id="service-app",
    microsoft_client_secret=SecretStr(SERVICE_SECRET),
    google_client_id="service.apps.googleusercontent.com",
    google_client_secret=SecretStr(SERVICE_SECRET),
)


def providers(*secrets: TenantSecrets) -> Providers:
    return Providers.from_settings(SETTINGS, InMemoryCredentials(*secrets))  # type: ignore[arg-type]


def tenant(provider: Provider = Provider.MICROSOFT, **identity: object) -> TenantSettings:
    return TenantSettings(
        tenant_id="b", provider=provider, identity=IdentitySettings.model_validate(identity)
    )


def grant(provider: Provider, authority: str | None, client_id: str | None) -> StoredGrant:
    principal = Principal(tenant_id="b", kind=PrincipalKind.USER, address="anna@b.example")
    now = datetime(2026, 11, 29, tzinfo=UTC)
    return StoredGrant(
        principal, provider, GrantStatus.ACTIVE, (), "refresh-token", 1,
        AcquisitionFlow.DEVICE_CODE, authority, client_id, now, None, None, None,
    )  # fmt: skip


async def test_the_service_secret_goes_with_the_service_app_only() -> None:
    ours = await providers().microsoft_app(tenant())
    assert ours.client_id == "service-app" and ours.client_secret == SERVICE_SECRET
    assert ours.authority == "https://login.microsoftonline.com/organizations"
    own_client = await providers().microsoft_app(tenant(client_id="tenant-app"))
    assert own_client.client_secret is None  # a public client, or the tenant's own secret
    own_host = await providers().microsoft_app(tenant(authority_host="https://login.microsoftonline.us"))
    assert own_host.client_secret is None and own_host.authority.startswith(
        "https://login.microsoftonline.us/"
    )
    with_own_secret = await providers(
        TenantSecrets("b", microsoft_client_secret="tenant-secret")
    ).microsoft_app(tenant(client_id="tenant-app"))
    assert with_own_secret.client_secret == "tenant-secret"

    google = await providers().google_app(tenant(Provider.GOOGLE))
    assert google.client_secret == SERVICE_SECRET and google.token_uri == SETTINGS.google_token_uri
    for identity in (
        {"client_id": "tenant.apps.googleusercontent.com"},
        {"token_uri": "https://accounts.google.com/token"},
    ):
        assert (await providers().google_app(tenant(Provider.GOOGLE, **identity))).client_secret is None
        own = providers(TenantSecrets("b", google_client_secret="tenant-google-secret"))
        assert (
            await own.google_app(tenant(Provider.GOOGLE, **identity))
        ).client_secret == "tenant-google-secret"


@pytest.mark.parametrize(
    ("provider", "identity", "setting"),
    [
        (Provider.MICROSOFT, {"authority_host": "https://127.0.0.1:9"}, "identity.authority_host"),
        (
            Provider.MICROSOFT,
            {"authority_host": "http://login.microsoftonline.com"},
            "identity.authority_host",
        ),
        (Provider.GOOGLE, {"token_uri": "https://127.0.0.1:9/token"}, "identity.token_uri"),
    ],
)
async def test_a_tenant_endpoint_off_the_allowlist_is_a_configuration_error(
    provider: Provider, identity: dict, setting: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"FLEETMAIL_IDENTITY_ALLOWED_ORIGINS|not https") as refused:
        await providers().refresh(tenant(provider, **identity), grant(provider, None, None))
    assert refused.value.setting == setting


async def test_a_service_accounts_token_uri_is_held_to_the_allowlist_too() -> None:
    account = {
        "type": "service_account",
        "client_email": "x@y",
        "private_key": "k",
        "token_uri": "https://127.0.0.1:9/t",
    }
    with pytest.raises(ConfigurationError, match="not an identity provider"):
        await providers(TenantSecrets("b", google_service_account=account)).google_service_account(
            tenant(Provider.GOOGLE)
        )


async def test_a_grant_is_not_sent_to_another_authority_or_client() -> None:
    signed_in_at = "https://login.microsoftonline.com/organizations"
    moved = tenant(directory="fabrikam.onmicrosoft.com")
    with pytest.raises(ReauthorizationRequired, match="sign in again") as refused:
        await providers().refresh(moved, grant(Provider.MICROSOFT, signed_in_at, "service-app"))
    assert refused.value.error == "identity_settings_changed"
    with pytest.raises(ReauthorizationRequired):
        await providers().refresh(
            tenant(client_id="tenant-app"), grant(Provider.MICROSOFT, signed_in_at, "service-app")
        )
    with pytest.raises(ReauthorizationRequired):
        google = tenant(Provider.GOOGLE, client_id="tenant.apps.googleusercontent.com")
        await providers().refresh(
            google, grant(Provider.GOOGLE, SETTINGS.google_token_uri, "service.apps.googleusercontent.com")
        )


async def test_app_only_never_falls_back_to_the_service_secret() -> None:
    """An app-only token for a directory the tenant names, with the shared app and the
    service's secret, would let one tenant send as anyone in another's organisation."""
    victim = tenant(app_only=True, directory="00000000-0000-0000-0000-0000000000aa")
    with pytest.raises(ConfigurationError, match="no Microsoft client secret") as refused:
        await providers().microsoft_app(victim, app_only=True)
    assert refused.value.setting == "microsoft_client_secret in the tenant's credentials"
    own = providers(TenantSecrets("b", microsoft_client_secret="tenant-secret"))
    assert (await own.microsoft_app(victim, app_only=True)).client_secret == "tenant-secret"


async def test_a_directory_that_is_no_id_domain_or_alias_is_a_configuration_error() -> None:
    """Refused again here: an older gateway may have written it into the tenants bucket."""
    for directory in ("contoso.example/../oauth2", "organizations?x=1", "fabrikam"):
        with pytest.raises(ConfigurationError, match="directory is refused") as refused:
            await providers().microsoft_app(tenant(directory=directory))
        assert refused.value.setting == "identity.directory"
