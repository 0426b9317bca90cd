"""The `IdentityProvider` port over the real providers: which app a tenant uses, and the
Microsoft (MSAL) or Google (google-auth) adapter that talks to its token endpoint.

A tenant's app is configuration: its client id (tenant settings or the service default) and
its secrets. A missing one is a `ConfigurationError` that names the setting.

A tenant may name its own app and endpoints, within limits:
- every endpoint a tenant names (`identity.authority_host`, `identity.token_uri`, a service
  account key's `token_uri`) must be on the operator's allowlist
  (`FLEETMAIL_IDENTITY_ALLOWED_ORIGINS`), and `identity.directory` must be a directory id, a
  domain name or an Entra alias, checked here before any call, whatever the gateway that
  wrote the settings checked;
- the service-wide client secret goes only with the service's own client id to the
  service's own endpoint: a tenant that brings its own app (client id, authority host or
  token endpoint) brings its own secret (its stored `microsoft_client_secret` or
  `google_client_secret`), or none;
- a refresh token goes back only to the authority and client it was issued by (stored with
  the grant): when the tenant's identity settings changed since, the grant needs a new
  sign-in instead (`ReauthorizationRequired`), and nothing is sent.

Every call goes through the tenant's proxy (`proxy_url`), else the service's
(`FLEETMAIL_TOKEN_PROXY_URL`), else none (`proxy_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import Principal, Provider, TokenResource
from fleetmail_contracts.transports import TRANSPORT_RESOURCE, Transport, resource_of_scopes
from fleetmail_runtime.identity_endpoints import (
    authority_host_refusal,
    directory_name_refusal,
    endpoint_refusal,
    origin,
)

from .adapters.credentials import SERVICE_ACCOUNT_SETTING, CredentialStore
from .adapters.google import GoogleApp, GoogleIdentity
from .adapters.http import SERVICE_PROXY_SETTING, TENANT_PROXY_SETTING, Proxy
from .adapters.microsoft import MicrosoftApp, MicrosoftIdentity
from .domain import IDENTITY_CHANGED, grant_bound_to, scopes_not_granted
from .errors import ConfigurationError, ReauthorizationRequired, ScopeNotGranted
from .model import AuthorizationRequest, Redeemed, StoredGrant, TokenResult
from .settings import TokenSettings

MICROSOFT_SECRET_SETTING = "microsoft_client_secret in the tenant's credentials"


def _same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b) and origin(a) is not None


def _rebind_refused(grant: StoredGrant, authority: str, client_id: str) -> ReauthorizationRequired:
    return ReauthorizationRequired(
        f"the grant for {grant.principal.address} was signed in with {grant.authority} "
        f"(client {grant.client_id}), and the tenant's identity settings now name {authority} "
        f"(client {client_id}): its refresh token is not sent elsewhere; sign in again",
        IDENTITY_CHANGED,
    )


CONSENT_WORDING = {
    False: '"Read, compose, send and permanently delete all your email from Gmail"',
    True: '"Send email on your behalf"',
}
"""The line of Google's consent screen that grants the transport's scope (SMTP, Gmail API)."""


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
            MicrosoftIdentity(settings.ca_bundle, settings.http_timeout_s, settings.common.outbound_policy()),
            GoogleIdentity(settings.ca_bundle, settings.http_timeout_s, settings.common.outbound_policy()),
            credentials,
        )

    def microsoft_scopes(self, resource: TokenResource) -> tuple[str, ...]:
        """The delegated scopes a Microsoft sign-in or refresh asks for, per resource (one
        resource per request: Entra refuses Graph and Outlook scopes together)."""
        return (
            self.settings.microsoft_graph_scopes
            if resource is TokenResource.GRAPH
            else self.settings.microsoft_scopes
        )

    def sign_in_scopes(self, tenant: TenantSettings) -> tuple[str, ...]:
        """What a sign-in asks for: what the tenant's transport needs."""
        if tenant.provider is Provider.MICROSOFT:
            return self.microsoft_scopes(TRANSPORT_RESOURCE[tenant.transport])
        if tenant.transport is Transport.GMAIL_API:
            return self.settings.google_gmail_api_scopes
        return self.settings.google_scopes

    async def refresh(
        self, tenant: TenantSettings, grant: StoredGrant, resource: TokenResource = TokenResource.SMTP
    ) -> TokenResult:
        assert grant.refresh_token is not None, "an app-only grant is not refreshed"
        if grant.provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant)
            if not grant_bound_to(grant.authority, grant.client_id, app.authority, app.client_id):
                raise _rebind_refused(grant, app.authority, app.client_id)
            # The grant's own resource is asked with the scopes it was consented with; the
            # other with that resource's configured scopes (one refresh token serves both).
            own = grant.scopes and resource_of_scopes(grant.provider, grant.scopes) is resource
            scopes = list(grant.scopes if own else self.microsoft_scopes(resource))
            return await self.microsoft.refresh(app, grant.refresh_token, scopes)
        google_app = await self.google_app(tenant)
        if not grant_bound_to(grant.authority, grant.client_id, google_app.token_uri, google_app.client_id):
            raise _rebind_refused(grant, google_app.token_uri, google_app.client_id)
        # One Google token serves every scope of its grant, whatever the resource.
        scopes = list(grant.scopes or self.settings.google_scopes)
        return await self.google.refresh(google_app, grant.refresh_token, scopes)

    async def issuer(self, tenant: TenantSettings, provider: Provider) -> tuple[str, str]:
        """The authority and client id the tenant's settings name now (allowlist checked)."""
        if provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant)
            return app.authority, app.client_id
        google_app = await self.google_app(tenant)
        return google_app.token_uri, google_app.client_id

    async def app_only_token(
        self, tenant: TenantSettings, principal: Principal, resource: TokenResource | None = None
    ) -> Redeemed:
        resource = resource or TRANSPORT_RESOURCE[tenant.transport]
        if tenant.provider is Provider.MICROSOFT:
            app = await self.microsoft_app(tenant, app_only=True)
            graph = resource is TokenResource.GRAPH
            scopes = [
                self.settings.microsoft_graph_app_only_scope
                if graph
                else self.settings.microsoft_app_only_scope
            ]
            result = await self.microsoft.acquire_for_client(app, scopes)
            return Redeemed(result, app.authority, app.client_id)
        info = await self.google_service_account(tenant)
        delegated = (
            self.settings.google_gmail_api_app_only_scopes
            if tenant.transport is Transport.GMAIL_API
            else self.settings.google_app_only_scopes
        )
        result = await self.google.service_account_token(
            info, principal.address, list(delegated), self.proxy_of(tenant)
        )
        return Redeemed(result, str(info["token_uri"]), info.get("client_id"))

    async def start_device_flow(self, tenant: TenantSettings) -> dict[str, Any]:
        app = await self.microsoft_app(tenant)
        return await self.microsoft.initiate_device_flow(app, list(self.sign_in_scopes(tenant)))

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
                app, list(self.sign_in_scopes(tenant)), redirect_uri, principal.address
            )
            return AuthorizationRequest(flow["auth_uri"], flow["state"], flow)
        google_app = await self.google_app(tenant)
        pkce = self.google.authorization_request(
            google_app, list(self.sign_in_scopes(tenant)), redirect_uri, principal.address
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
        if missing := scopes_not_granted(self.sign_in_scopes(tenant), result.scopes):
            # Granular consent: the user unticked a permission. A grant without it cannot
            # send, so it is handed back at once rather than stored and failing later.
            if result.refresh_token is not None:
                await self.google.revoke(google_app, result.refresh_token)
            raise ScopeNotGranted(
                f"the sign-in did not grant {' '.join(missing)}: the permission to send mail "
                "was left unticked on Google's consent screen. Sign in again and tick "
                f"{CONSENT_WORDING[tenant.transport is Transport.GMAIL_API]}"
            )
        return Redeemed(result, google_app.token_uri, google_app.client_id)

    async def revoke(self, tenant: TenantSettings, grant: StoredGrant) -> None:
        # Microsoft has no endpoint that revokes one refresh token; Google has.
        if grant.provider is Provider.GOOGLE and grant.refresh_token is not None:
            await self.google.revoke(await self.google_app(tenant), grant.refresh_token)

    def proxy_of(self, tenant: TenantSettings) -> Proxy | None:
        """The proxy the tenant's provider calls go through: its own wins over the service's."""
        if tenant.proxy_url:
            return Proxy.checked(tenant.proxy_url, TENANT_PROXY_SETTING)
        if self.settings.proxy_url is not None:
            return Proxy.checked(self.settings.proxy_url.get_secret_value(), SERVICE_PROXY_SETTING)
        return None

    def _allowed(self, tenant: TenantSettings, setting: str, url: str, *, host_only: bool = False) -> str:
        """A tenant-named endpoint, if the operator's allowlist has it; else a ConfigurationError."""
        allowed = self.settings.common.identity_allowed_origins
        refusal = (authority_host_refusal if host_only else endpoint_refusal)(url, allowed)
        if refusal is not None:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r}: {setting} is refused: {refusal}", setting=setting
            )
        return url

    async def microsoft_app(self, tenant: TenantSettings, *, app_only: bool = False) -> MicrosoftApp:
        """The tenant's Entra app. With the service's own client id and authority host,
        delegated grants use the service's client (public unless a default secret is set:
        Entra refuses a secret from a client registered as public). A tenant that names its
        own client id or authority host uses its own stored secret, or none (a public client):
        never the service's. App-only uses the tenant's stored client secret, and only it."""
        identity, settings = tenant.identity, self.settings
        host = settings.microsoft_authority_host.rstrip("/")
        own_host = False
        if identity.authority_host:
            tenant_host = self._allowed(
                tenant, "identity.authority_host", identity.authority_host, host_only=True
            ).rstrip("/")
            own_host = not _same_origin(tenant_host, host)
            host = tenant_host
        directory = identity.directory or settings.microsoft_directory
        if identity.directory is not None and (why := directory_name_refusal(identity.directory)):
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r}: identity.directory is refused: {why}",
                setting="identity.directory",
            )
        client_id = identity.client_id or settings.microsoft_client_id
        if not client_id:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} has no Microsoft app (client) id: set the tenant's "
                "identity.client_id or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID",
                setting="identity.client_id",
            )
        own_app = own_host or client_id != settings.microsoft_client_id
        default = settings.microsoft_client_secret
        secret = default.get_secret_value() if default and not own_app else None
        if own_app:
            secret = (await self.credentials.get(tenant.tenant_id)).microsoft_client_secret
        if app_only:
            # Never the service-wide secret: with it, a tenant naming another organisation's
            # directory would get an app-only token there with the shared app.
            secret = (await self.credentials.get(tenant.tenant_id)).microsoft_client_secret
            if not secret:
                raise ConfigurationError(
                    f"tenant {tenant.tenant_id!r} sends app-only but has no Microsoft client secret: "
                    f"store one as {MICROSOFT_SECRET_SETTING} (app-only never uses the service's)",
                    setting=MICROSOFT_SECRET_SETTING,
                )
        return MicrosoftApp(
            authority=f"{host}/{directory}",
            client_id=client_id,
            client_secret=secret,
            proxy=self.proxy_of(tenant),
        )

    async def google_app(self, tenant: TenantSettings) -> GoogleApp:
        """The tenant's Google OAuth client. The service's client secret goes only with the
        service's client id to the service's token endpoint; a tenant that names its own
        client or token endpoint uses its own stored `google_client_secret`, or none."""
        settings = self.settings
        client_id = tenant.identity.client_id or settings.google_client_id
        if not client_id:
            raise ConfigurationError(
                f"tenant {tenant.tenant_id!r} has no Google OAuth client id: set the tenant's "
                "identity.client_id or FLEETMAIL_TOKEN_GOOGLE_CLIENT_ID",
                setting="identity.client_id",
            )
        token_uri = settings.google_token_uri
        if tenant.identity.token_uri:
            token_uri = self._allowed(tenant, "identity.token_uri", tenant.identity.token_uri)
        own_app = client_id != settings.google_client_id or token_uri != settings.google_token_uri
        if own_app:
            secret = (await self.credentials.get(tenant.tenant_id)).google_client_secret
        else:
            secret = (
                settings.google_client_secret.get_secret_value() if settings.google_client_secret else None
            )
        return GoogleApp(
            client_id=client_id,
            client_secret=secret,
            auth_uri=settings.google_auth_uri,
            token_uri=token_uri,
            revoke_uri=settings.google_revoke_uri,
            proxy=self.proxy_of(tenant),
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
        setting = "identity.token_uri" if tenant.identity.token_uri else SERVICE_ACCOUNT_SETTING
        token_uri = self._allowed(tenant, setting, tenant.identity.token_uri or str(account["token_uri"]))
        return {**account, "token_uri": token_uri}
