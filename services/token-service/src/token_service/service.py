"""token-service's use cases: acquisition, access tokens with single-flight refresh, status.

Wired by `app.py`; talks to providers, the grant store and the bus only through the objects
passed in, so tests can build it with other adapters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenReply,
    AccessTokenRequest,
    AcquisitionFlow,
    GrantStatus,
    Principal,
    Provider,
    TokenAcquired,
    TokenDeleted,
    TokenEventBase,
    TokenExpiring,
    TokenReauthorizationRequired,
    TokenRecovered,
    TokenRefreshed,
    TokenRefreshFailed,
)
from fleetmail_runtime.telemetry import SpanScope
from fleetmail_runtime.tenants import TenantDirectory, UnknownTenant
from opentelemetry.trace import SpanKind

from .adapters.grants import GrantStore, IssuedToken, StoredGrant
from .adapters.microsoft import TokenResult
from .domain import expiring_soon, grant_id, keepalive_due, needs_refresh, predicted_death
from .errors import (
    ConfigurationError,
    NoGrant,
    ProviderUnavailable,
    ReauthorizationRequired,
    TokenServiceError,
)
from .providers import Providers
from .settings import TokenSettings
from .telemetry import REFRESHES, TOKEN_REQUESTS, tracer

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Publish = Callable[[TokenEventBase], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CachedToken:
    access_token: str = field(repr=False)
    expires_at: datetime
    issued_at: datetime | None = None
    provider: Provider = Provider.MICROSOFT


class TokenService:
    def __init__(
        self,
        settings: TokenSettings,
        grants: GrantStore,
        tenants: TenantDirectory,
        providers: Providers,
        publish: Publish,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.grants = grants
        self.tenants = tenants
        self.providers = providers
        self.publish = publish
        self.clock = clock
        self._tokens: dict[str, CachedToken] = {}
        self._refreshing: dict[str, asyncio.Future[CachedToken]] = {}
        self._failing: set[str] = set()
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def prime(self, principal: Principal, provider: Provider, issued: IssuedToken) -> None:
        """A grant was just acquired: its first access token needs no refresh."""
        self._tokens[grant_id(principal)] = CachedToken(
            issued.access_token, issued.expires_at, issued.issued_at, provider
        )

    # --- access tokens -----------------------------------------------------------------

    async def access_token(self, request: AccessTokenRequest) -> AccessTokenReply:
        reply = await self._access_token(request)
        TOKEN_REQUESTS.add(1, {"outcome": reply.outcome.value})
        return reply

    async def _access_token(self, request: AccessTokenRequest) -> AccessTokenReply:
        principal = request.principal
        try:
            token = await self._fresh_token(principal, request.force_refresh)
        except NoGrant as exc:
            return AccessTokenReply(outcome=AccessTokenOutcome.NO_GRANT, detail=str(exc))
        except ReauthorizationRequired as exc:
            return AccessTokenReply(outcome=AccessTokenOutcome.REAUTHORIZATION_REQUIRED, detail=str(exc))
        except ProviderUnavailable as exc:
            return AccessTokenReply(
                outcome=AccessTokenOutcome.PROVIDER_UNAVAILABLE,
                detail=str(exc),
                retry_after_s=exc.retry_after_s or 5.0,
            )
        except (ConfigurationError, UnknownTenant) as exc:
            return AccessTokenReply(outcome=AccessTokenOutcome.REAUTHORIZATION_REQUIRED, detail=str(exc))
        return AccessTokenReply(
            outcome=AccessTokenOutcome.GRANTED,
            access_token=token.access_token,
            expires_at=token.expires_at,
            provider=token.provider,
        )

    async def _fresh_token(self, principal: Principal, force_refresh: bool) -> CachedToken:
        key = grant_id(principal)
        cached = self._tokens.get(key)
        if cached is not None and not force_refresh and not self._due(cached):
            return cached
        in_flight = self._refreshing.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        future: asyncio.Future[CachedToken] = asyncio.get_running_loop().create_future()
        self._refreshing[key] = future
        try:
            token = await self._obtain(principal, force_refresh, self.clock())
        except BaseException as exc:
            future.set_exception(exc)
            # Waiters re-raise it; mark it retrieved so an unawaited future does not warn.
            future.exception()
            raise
        else:
            future.set_result(token)
            return token
        finally:
            del self._refreshing[key]

    def _due(self, token: CachedToken) -> bool:
        margin = timedelta(seconds=self.settings.refresh_margin_s)
        return needs_refresh(token.expires_at, self.clock(), margin, token.issued_at)

    def _usable(self, grant: StoredGrant, force_refresh: bool, started_at: datetime) -> CachedToken | None:
        """The stored access token, if it is good enough to hand out."""
        if grant.access_token is None or grant.access_expires_at is None:
            return None
        token = CachedToken(
            grant.access_token, grant.access_expires_at, grant.access_issued_at, grant.provider
        )
        if self._due(token):
            return None
        if force_refresh and (grant.access_issued_at is None or grant.access_issued_at < started_at):
            return None
        return token

    async def _obtain(self, principal: Principal, force_refresh: bool, started_at: datetime) -> CachedToken:
        """A token from the store, or a refresh under the grant's lease; waits for another holder."""
        key = grant_id(principal)
        deadline = self.clock() + timedelta(seconds=self.settings.lease_ttl_s * 2)
        ttl = timedelta(seconds=self.settings.lease_ttl_s)
        while True:
            grant = await self._live_grant(principal)
            usable = self._usable(grant, force_refresh, started_at)
            if usable is not None:
                self._tokens[key] = usable
                return usable
            if await self.grants.take_lease(principal, self.owner, self.clock(), ttl):
                try:
                    # Re-read under the lease: another replica may have refreshed meanwhile.
                    grant = await self._live_grant(principal)
                    usable = self._usable(grant, force_refresh, started_at)
                    if usable is not None:
                        await self.grants.release_lease(principal, self.owner)
                        self._tokens[key] = usable
                        return usable
                    return await self._refresh(grant)
                except BaseException:
                    await self.grants.release_lease(principal, self.owner)
                    raise
            if self.clock() > deadline:
                raise ProviderUnavailable("another replica is refreshing this grant; try again", 1.0)
            await asyncio.sleep(self.settings.lease_poll_s)

    async def _live_grant(self, principal: Principal) -> StoredGrant:
        grant = await self.grants.get(principal)
        if grant is not None and grant.flow is AcquisitionFlow.APP_ONLY:
            tenant = await self.tenants.get(principal.tenant_id)
            if not (tenant.oauth_enabled and tenant.identity.app_only):
                # The tenant left app-only sending: its app-only grants go with it.
                await self.grants.delete(principal)
                self._tokens.pop(grant_id(principal), None)
                grant = None
        if grant is None:
            tenant = await self.tenants.get(principal.tenant_id)
            if not (tenant.oauth_enabled and tenant.identity.app_only):
                raise NoGrant(f"no {principal.kind.value} grant for {principal.address}")
            grant = await self.acquire_app_only(principal, tenant)
        if grant.status is not GrantStatus.ACTIVE:
            raise ReauthorizationRequired(f"the grant for {principal.address} needs re-authorisation")
        return grant

    # --- app-only ----------------------------------------------------------------------

    async def _app_only_token(
        self, principal: Principal, tenant: TenantSettings
    ) -> tuple[TokenResult, str, str | None]:
        """A token in the app's own name: Microsoft client credentials, or a Google service
        account acting for the principal through domain-wide delegation."""
        if tenant.provider is Provider.MICROSOFT:
            app = await self.providers.microsoft_app(tenant, app_only=True)
            scopes = [self.settings.microsoft_app_only_scope]
            result = await self.providers.microsoft.acquire_for_client(app, scopes)
            return result, app.authority, app.client_id
        info = await self.providers.google_service_account(tenant)
        result = await self.providers.google.service_account_token(
            info, principal.address, list(self.settings.google_app_only_scopes), tenant.proxy_url
        )
        return result, str(info["token_uri"]), info.get("client_id")

    async def acquire_app_only(self, principal: Principal, tenant: TenantSettings) -> StoredGrant:
        """Create an app-only grant: no refresh token, nothing a user's consent can lapse on."""
        result, authority, client_id = await self._app_only_token(principal, tenant)
        now = self.clock()
        issued = IssuedToken(result.access_token, now, now + timedelta(seconds=result.expires_in), None)
        await self.grants.replace(
            principal,
            tenant.provider,
            issued,
            result.scopes,
            AcquisitionFlow.APP_ONLY,
            authority,
            client_id,
            None,
        )
        self.prime(principal, tenant.provider, issued)
        await self.publish(
            TokenAcquired(
                event_id=uuid.uuid4().hex,
                principal=principal,
                provider=tenant.provider,
                occurred_at=now,
                flow=AcquisitionFlow.APP_ONLY,
            )
        )
        grant = await self.grants.get(principal)
        if grant is None:
            raise NoGrant(f"the app-only grant for {principal.address} was deleted meanwhile")
        return grant

    async def credentials_changed(self, tenant_id: str) -> None:
        """New app credentials: app-only grants are re-created with them on next use."""
        for grant in await self.grants.list_tenant(tenant_id):
            if grant.flow is AcquisitionFlow.APP_ONLY:
                await self.grants.delete(grant.principal)
                self._tokens.pop(grant_id(grant.principal), None)

    async def _refresh(self, grant: StoredGrant) -> CachedToken:
        """Redeem the refresh token; the caller holds the lease."""
        principal = grant.principal
        tenant = await self.tenants.get(principal.tenant_id)
        labels = {"provider": grant.provider.value, "flow": grant.flow.value}
        span = tracer.start_span(
            "oauth2 token refresh", kind=SpanKind.CLIENT, attributes={**labels, "tenant": principal.tenant_id}
        )
        try:
            with SpanScope(span):
                result = await self._redeem(grant, tenant, principal)
        except ReauthorizationRequired as exc:
            REFRESHES.add(1, {**labels, "result": "reauthorization_required"})
            await self._mark_dead(grant, exc)
            raise
        except ProviderUnavailable as exc:
            REFRESHES.add(1, {**labels, "result": "provider_unavailable"})
            await self._failing_streak(grant, exc)
            raise
        REFRESHES.add(1, {**labels, "result": "ok"})
        return await self._store_refreshed(grant, tenant, result)

    async def _redeem(self, grant: StoredGrant, tenant: TenantSettings, principal: Principal) -> TokenResult:
        """One call to the provider's token endpoint for this grant."""
        if grant.flow is AcquisitionFlow.APP_ONLY:
            try:
                result, _, _ = await self._app_only_token(principal, tenant)
            except ConfigurationError as exc:
                # The app's credentials were refused: as dead as a revoked grant until
                # an administrator stores working ones.
                raise ReauthorizationRequired(str(exc), "app_credentials_refused") from exc
            return result
        if grant.refresh_token is None:
            raise ReauthorizationRequired(f"the grant for {principal.address} has no refresh token")
        if grant.provider is Provider.MICROSOFT:
            app = await self.providers.microsoft_app(tenant)
            scopes = list(grant.scopes or self.settings.microsoft_scopes)
            return await self.providers.microsoft.refresh(app, grant.refresh_token, scopes)
        google_app = await self.providers.google_app(tenant)
        scopes = list(grant.scopes or self.settings.google_scopes)
        return await self.providers.google.refresh(google_app, grant.refresh_token, scopes)

    async def _store_refreshed(
        self, grant: StoredGrant, tenant: TenantSettings, result: TokenResult
    ) -> CachedToken:
        principal = grant.principal
        if self.settings.fault_exit_after_redeem:
            log.warning("fault hook: exiting between the provider's answer and the write")
            os._exit(17)
        now = self.clock()
        issued = IssuedToken(
            result.access_token, now, now + timedelta(seconds=result.expires_in), result.refresh_token
        )
        death = (
            None
            if grant.flow is AcquisitionFlow.APP_ONLY
            else predicted_death(grant.provider, now, grant.acquired_at, tenant.identity.google_testing_mode)
        )
        # The rotated refresh token is stored before the new access token is handed out.
        if not await self.grants.record_refresh(grant, issued, death, self.owner):
            log.warning("grant %s changed while refreshing; the newer record wins", grant_id(principal))
        token = CachedToken(issued.access_token, issued.expires_at, issued.issued_at, grant.provider)
        self._tokens[grant_id(principal)] = token
        recovered = grant_id(principal) in self._failing
        self._failing.discard(grant_id(principal))
        base = {
            "event_id": uuid.uuid4().hex,
            "principal": principal,
            "provider": grant.provider,
            "occurred_at": now,
        }
        if recovered:
            await self.publish(TokenRecovered(**base))
        await self.publish(
            TokenRefreshed(
                **base,
                rotated=result.refresh_token is not None and result.refresh_token != grant.refresh_token,
                predicted_death_at=death,
            )
        )
        return token

    async def _failing_streak(self, grant: StoredGrant, exc: ProviderUnavailable) -> None:
        """One event when a streak of transient failures begins, not one per attempt."""
        key = grant_id(grant.principal)
        if key in self._failing:
            return
        self._failing.add(key)
        await self.publish(
            TokenRefreshFailed(
                event_id=uuid.uuid4().hex,
                principal=grant.principal,
                provider=grant.provider,
                occurred_at=self.clock(),
                error=str(exc),
                retry_after_s=exc.retry_after_s,
            )
        )

    async def sweep(self) -> None:
        """Keep-alive: redeem idle grants; announce deaths that cannot be prevented. Idempotent."""
        idle = timedelta(seconds=self.settings.keepalive_idle_s)
        horizon = timedelta(seconds=self.settings.expiring_horizon_s)
        for principal in await self.grants.active_principals():
            try:
                grant = await self._live_grant(principal)
                app_only = grant.flow is AcquisitionFlow.APP_ONLY  # nothing to keep alive
                if not app_only and keepalive_due(
                    grant.last_refreshed_at or grant.acquired_at, self.clock(), idle
                ):
                    await self._keep_alive(principal, idle)
                    grant = await self._live_grant(principal)
                soon = expiring_soon(grant.predicted_death_at, self.clock(), horizon)
                if await self.grants.announce_expiring(principal, self.clock(), soon):
                    assert grant.predicted_death_at is not None
                    await self.publish(
                        TokenExpiring(
                            event_id=uuid.uuid4().hex,
                            principal=principal,
                            provider=grant.provider,
                            occurred_at=self.clock(),
                            predicted_death_at=grant.predicted_death_at,
                        )
                    )
            except (TokenServiceError, UnknownTenant) as exc:
                log.warning(
                    "keep-alive skipped a %s grant of tenant %s: %s",
                    principal.kind.value,
                    principal.tenant_id,
                    exc,
                )

    async def _keep_alive(self, principal: Principal, idle: timedelta) -> None:
        """Redeem under the lease, unless another replica did while this one was looking."""
        ttl = timedelta(seconds=self.settings.lease_ttl_s)
        if not await self.grants.take_lease(principal, self.owner, self.clock(), ttl):
            return  # someone is refreshing it right now, which is all keep-alive wants
        try:
            grant = await self._live_grant(principal)
            if not keepalive_due(grant.last_refreshed_at or grant.acquired_at, self.clock(), idle):
                await self.grants.release_lease(principal, self.owner)
                return
            await self._refresh(grant)
        except BaseException:
            await self.grants.release_lease(principal, self.owner)
            raise

    async def delete(self, principal: Principal, reason: str) -> bool:
        """Delete a grant (the seed's [Delete]; Auto Delete), revoking it where the provider can."""
        grant = await self.grants.get(principal)
        deleted = await self.grants.delete(principal)
        self._tokens.pop(grant_id(principal), None)
        if grant is None or not deleted:
            return False
        if grant.provider is Provider.GOOGLE and grant.refresh_token is not None:
            tenant = await self.tenants.get(principal.tenant_id)
            await self.providers.google.revoke(await self.providers.google_app(tenant), grant.refresh_token)
        await self.publish(
            TokenDeleted(
                event_id=uuid.uuid4().hex,
                principal=principal,
                provider=grant.provider,
                occurred_at=self.clock(),
                reason=reason,
            )
        )
        log.info("deleted the %s grant of tenant %s (%s)", principal.kind.value, principal.tenant_id, reason)
        return True

    async def _mark_dead(self, grant: StoredGrant, exc: ReauthorizationRequired) -> None:
        self._tokens.pop(grant_id(grant.principal), None)
        self._failing.discard(grant_id(grant.principal))
        await self.grants.set_status(grant.principal, GrantStatus.REAUTHORIZATION_REQUIRED, self.owner)
        await self.publish(
            TokenReauthorizationRequired(
                event_id=uuid.uuid4().hex,
                principal=grant.principal,
                provider=grant.provider,
                occurred_at=self.clock(),
                error=exc.error,
                error_codes=exc.error_codes,
                detail=str(exc),
            )
        )
