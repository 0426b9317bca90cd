"""Which provider app a tenant uses, and the adapters that talk to the providers.

A tenant's app is configuration: its client id (tenant settings or the service default) and
its secrets (the tenant's stored credentials, else the service default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetmail_contracts.tenants import TenantSettings

from .adapters.credentials import CredentialStore
from .adapters.google import GoogleApp, GoogleIdentity
from .adapters.microsoft import MicrosoftApp, MicrosoftIdentity
from .errors import ConfigurationError
from .settings import TokenSettings


@dataclass
class Providers:
    settings: TokenSettings
    microsoft: MicrosoftIdentity
    google: GoogleIdentity
    credentials: CredentialStore

    @classmethod
    def from_settings(cls, settings: TokenSettings, credentials: CredentialStore) -> Providers:
        return cls(
            settings,
            MicrosoftIdentity(settings.ca_bundle, settings.http_timeout_s),
            GoogleIdentity(settings.ca_bundle, settings.http_timeout_s),
            credentials,
        )

    async def microsoft_app(self, tenant: TenantSettings, *, app_only: bool = False) -> MicrosoftApp:
        """The tenant's Entra app. Delegated grants use the service's client (public unless a
        default secret is set: Entra refuses a secret from a client registered as public);
        app-only uses the tenant's stored client secret."""
        identity, settings = tenant.identity, self.settings
        host = (identity.authority_host or settings.microsoft_authority_host).rstrip("/")
        directory = identity.directory or settings.microsoft_directory
        client_id = identity.client_id or settings.microsoft_client_id
        if not client_id:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} has no Microsoft app (client) id: set the tenant's "
                "identity.client_id or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID"
            )
        default = settings.microsoft_client_secret
        secret = default.get_secret_value() if default else None
        if app_only:
            secret = (await self.credentials.get(tenant.tenant_id)).microsoft_client_secret or secret
            if not secret:
                raise ConfigurationError(
                    f"tenant {tenant.tenant_id!r} sends app-only but has no Microsoft client secret: "
                    "store one with the tenant's credentials"
                )
        return MicrosoftApp(
            authority=f"{host}/{directory}",
            client_id=client_id,
            client_secret=secret,
            proxy_url=tenant.proxy_url,
        )

    async def google_app(self, tenant: TenantSettings) -> GoogleApp:
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

    async def google_service_account(self, tenant: TenantSettings) -> dict[str, Any]:
        """The tenant's service account key, its token URI set by the tenant's settings."""
        account = (await self.credentials.get(tenant.tenant_id)).google_service_account
        if account is None:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} sends app-only but has no Google service account key: "
                "store one with the tenant's credentials"
            )
        return {**account, "token_uri": tenant.identity.token_uri or account["token_uri"]}
