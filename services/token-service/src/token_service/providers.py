"""Which provider app a tenant uses, and the adapters that talk to the providers."""

from __future__ import annotations

from dataclasses import dataclass

from fleetmail_contracts.tenants import TenantSettings

from .adapters.google import GoogleApp, GoogleIdentity
from .adapters.microsoft import MicrosoftApp, MicrosoftIdentity
from .errors import ConfigurationError
from .settings import TokenSettings


@dataclass
class Providers:
    settings: TokenSettings
    microsoft: MicrosoftIdentity
    google: GoogleIdentity

    @classmethod
    def from_settings(cls, settings: TokenSettings) -> Providers:
        return cls(
            settings,
            MicrosoftIdentity(settings.ca_bundle, settings.http_timeout_s),
            GoogleIdentity(settings.ca_bundle, settings.http_timeout_s),
        )

    def microsoft_app(self, tenant: TenantSettings) -> MicrosoftApp:
        identity, settings = tenant.identity, self.settings
        host = (identity.authority_host or settings.microsoft_authority_host).rstrip("/")
        directory = identity.directory or settings.microsoft_directory
        client_id = identity.client_id or settings.microsoft_client_id
        if not client_id:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} has no Microsoft app (client) id: set the tenant's "
                "identity.client_id or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID"
            )
        secret = settings.microsoft_client_secret
        return MicrosoftApp(
            authority=f"{host}/{directory}",
            client_id=client_id,
            client_secret=secret.get_secret_value() if secret else None,
            proxy_url=tenant.proxy_url,
        )

    def google_app(self, tenant: TenantSettings) -> GoogleApp:
        settings = self.settings
        client_id = tenant.identity.client_id or settings.google_client_id
        if not client_id:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} has no Google OAuth client id: set the tenant's "
                "identity.client_id or FLEETMAIL_TOKEN_GOOGLE_CLIENT_ID"
            )
        secret = settings.google_client_secret
        return GoogleApp(
            client_id=client_id,
            client_secret=secret.get_secret_value() if secret else None,
            auth_uri=settings.google_auth_uri,
            token_uri=tenant.identity.token_uri or settings.google_token_uri,
            revoke_uri=settings.google_revoke_uri,
            proxy_url=tenant.proxy_url,
        )
