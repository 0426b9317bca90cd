"""The `IdentityProvider` port over the real providers: which app a tenant uses, and the
Microsoft (MSAL) or Google (google-auth) adapter that talks to its token endpoint.

A tenant's app is configuration: its client id (tenant settings or the service default) and
its secrets (the tenant's stored credentials, else the service default). A missing one is a
`ConfigurationError` that names the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import Principal, Provider

from .adapters.credentials import SERVICE_ACCOUNT_SETTING, CredentialStore
from .adapters.google import GoogleApp, GoogleIdentity
from .adapters.microsoft import MicrosoftApp, MicrosoftIdentity
from .errors import ConfigurationError
from .model import AuthorizationRequest, Redeemed, StoredGrant, TokenResult
from .settings import TokenSettings

MICROSOFT_SECRET_SETTING = "microsoft_client_secret in the tenant's credentials"


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

    async def refresh(self, tenant: TenantSettings, grant: StoredGrant) -> TokenResult:
        assert grant.refresh_token is not None, "an app-only grant is not refreshed"
        if grant.provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant)
            scopes = list(grant.scopes or self.settings.microsoft_scopes)
            return await self.microsoft.refresh(app, grant.refresh_token, scopes)
        google_app = await self.google_app(tenant)
        scopes = list(grant.scopes or self.settings.google_scopes)
        return await self.google.refresh(google_app, grant.refresh_token, scopes)

    async def app_only_token(self, tenant: TenantSettings, principal: Principal) -> Redeemed:
        if tenant.provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant, app_only=True)
            scopes = [self.settings.microsoft_app_only_scope]
            result = await self.microsoft.acquire_for_client(app, scopes)
            return Redeemed(result, app.authority, app.client_id)
        info = await self.google_service_account(tenant)
        result = await self.google.service_account_token(
            info, principal.address, list(self.settings.google_app_only_scopes), tenant.proxy_url
        )
        return Redeemed(result, str(info["token_uri"]), info.get("client_id"))

    async def start_device_flow(self, tenant: TenantSettings) -> dict[str, Any]:
        app = await self.microsoft_app(tenant)
        return await self.microsoft.initiate_device_flow(app, list(self.settings.microsoft_scopes))

    async def poll_device_flow(self, tenant: TenantSettings, flow: dict[str, Any]) -> Redeemed | None:
        app = await self.microsoft_app(tenant)
        result = await self.microsoft.poll_device_flow(app, flow)
        return None if result is None else Redeemed(result, app.authority, app.client_id)

    async def start_authorization(
        self, tenant: TenantSettings, principal: Principal, redirect_uri: str
    ) -> AuthorizationRequest:
        if tenant.provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant)
            flow = await self.microsoft.initiate_auth_code_flow(
                app, list(self.settings.microsoft_scopes), redirect_uri, principal.address
            )
            return AuthorizationRequest(flow["auth_uri"], flow["state"], flow)
        google_app = await self.google_app(tenant)
        pkce = self.google.authorization_request(
            google_app, list(self.settings.google_scopes), redirect_uri, principal.address
        )
        flow = {"code_verifier": pkce.code_verifier, "redirect_uri": redirect_uri}
        return AuthorizationRequest(pkce.authorization_url, pkce.state, flow)

    async def redeem_authorization(
        self, tenant: TenantSettings, provider: Provider, flow: dict[str, Any], state: str, code: str
    ) -> Redeemed:
        if provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant)
            result = await self.microsoft.redeem_auth_code(app, flow, {"state": state, "code": code})
            return Redeemed(result, app.authority, app.client_id)
        google_app = await self.google_app(tenant)
        result = await self.google.redeem_code(google_app, code, flow["code_verifier"], flow["redirect_uri"])
        return Redeemed(result, google_app.token_uri, google_app.client_id)

    async def revoke(self, tenant: TenantSettings, grant: StoredGrant) -> None:
        # Microsoft has no endpoint that revokes one refresh token; Google has.
        if grant.provider is Provider.GOOGLE and grant.refresh_token is not None:
            await self.google.revoke(await self.google_app(tenant), grant.refresh_token)

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
                "identity.client_id or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID",
                setting="identity.client_id",
            )
        default = settings.microsoft_client_secret
        secret = default.get_secret_value() if default else None
        if app_only:
            secret = (await self.credentials.get(tenant.tenant_id)).microsoft_client_secret or secret
            if not secret:
                raise ConfigurationError(
                    f"tenant {tenant.tenant_id!r} sends app-only but has no Microsoft client secret: "
                    f"store one as {MICROSOFT_SECRET_SETTING}",
                    setting=MICROSOFT_SECRET_SETTING,
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
                "identity.client_id or FLEETMAIL_TOKEN_GOOGLE_CLIENT_ID",
                setting="identity.client_id",
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
                f"store one as {SERVICE_ACCOUNT_SETTING}",
                setting=SERVICE_ACCOUNT_SETTING,
            )
        return {**account, "token_uri": tenant.identity.token_uri or account["token_uri"]}
