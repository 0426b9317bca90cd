"""Which proxy a tenant's provider calls go through, decided before any call: the tenant's
own `proxy_url` wins over the service's `FLEETMAIL_TOKEN_PROXY_URL`, a malformed one is a
configuration error naming its setting, and neither ever shows the proxy's credentials.
The calls themselves go through a real CONNECT proxy in tests/integration/test_token_proxy.py."""

from __future__ import annotations

import pytest
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import Provider
from fleetmail_runtime.settings import CommonSettings
from pydantic import SecretStr, ValidationError
from token_service.adapters.http import SERVICE_PROXY_SETTING, TENANT_PROXY_SETTING, Proxy
from token_service.errors import ConfigurationError
from token_service.providers import Providers
from token_service.settings import TokenSettings

from tests.fakes.token import InMemoryCredentials

SERVICE_PROXY = "http://fleet:service-pw@proxy.operator.example:3128"
TENANT_PROXY = "https://site:tenant-pw@proxy.contoso.example:8443"


def providers(proxy_url: str | None) -> Providers:
    settings = TokenSettings(
        microsoft_client_id="service-app",
        google_client_id="service.apps.googleusercontent.com",
        proxy_url=SecretStr(proxy_url) if proxy_url else None,
    )
    return Providers.from_settings(settings, InMemoryCredentials())  # type: ignore[arg-type]


def tenant(proxy_url: str | None = None, provider: Provider = Provider.MICROSOFT) -> TenantSettings:
    return TenantSettings(tenant_id="t1", provider=provider, proxy_url=proxy_url)


async def test_without_either_setting_calls_go_direct() -> None:
    assert providers(None).proxy_of(tenant()) is None
    assert (await providers(None).microsoft_app(tenant())).proxy is None


@pytest.mark.parametrize("provider", list(Provider))
async def test_the_service_proxy_carries_a_tenant_without_its_own(provider: Provider) -> None:
    chosen = providers(SERVICE_PROXY).proxy_of(tenant(provider=provider))
    assert chosen == Proxy(SERVICE_PROXY, SERVICE_PROXY_SETTING)
    service = providers(SERVICE_PROXY)
    app = (
        await service.microsoft_app(tenant(provider=provider))
        if provider is Provider.MICROSOFT
        else await service.google_app(tenant(provider=provider))
    )
    assert app.proxy == chosen


async def test_the_tenants_own_proxy_wins() -> None:
    service = providers(SERVICE_PROXY)
    assert service.proxy_of(tenant(TENANT_PROXY)) == Proxy(TENANT_PROXY, TENANT_PROXY_SETTING)
    assert (await service.google_app(tenant(TENANT_PROXY, Provider.GOOGLE))).proxy == Proxy(
        TENANT_PROXY, TENANT_PROXY_SETTING
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("socks5://site:tenant-pw@proxy.contoso.example:1080", "scheme must be http or https"),
        ("http://site:tenant-pw@proxy.contoso.example:port", "not a URL"),
        ("http://site:tenant-pw@:3128", "names no host"),
        ("proxy.contoso.example:3128", "scheme must be http or https"),
    ],
)
def test_a_malformed_tenant_proxy_is_a_configuration_error_without_its_credentials(
    url: str, why: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        providers(SERVICE_PROXY).proxy_of(tenant(url))
    assert refused.value.setting == TENANT_PROXY_SETTING and why in str(refused.value)
    assert "tenant-pw" not in str(refused.value)


def test_a_proxy_shows_where_it_is_never_its_credentials() -> None:
    proxy = Proxy.checked(TENANT_PROXY, TENANT_PROXY_SETTING)
    assert proxy.shown == "https://proxy.contoso.example:8443"
    assert "tenant-pw" not in repr(proxy)
    app_repr = repr(Proxy.checked(SERVICE_PROXY, SERVICE_PROXY_SETTING))
    assert "service-pw" not in app_repr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://fleet:service-pw@proxy.operator.example:21", "scheme must be http or https"),
        ("http://fleet:service-pw@10.1.2.3:3128", "private range"),
        ("http://fleet:service-pw@localhost:3128", "loopback range"),
    ],
)
def test_a_service_proxy_that_is_malformed_or_not_allowed_stops_the_service_at_start(
    url: str, why: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        TokenSettings(proxy_url=SecretStr(url))
    assert SERVICE_PROXY_SETTING in str(refused.value) and why in str(refused.value)
    assert "service-pw" not in str(refused.value)


def test_a_service_proxy_in_a_range_the_operator_allows_is_taken() -> None:
    allowed = CommonSettings(outbound_allowed_ranges=("10.1.0.0/16",))
    settings = TokenSettings(common=allowed, proxy_url=SecretStr("http://fleet:service-pw@10.1.2.3:3128"))
    assert settings.proxy_url is not None and "service-pw" not in repr(settings)
