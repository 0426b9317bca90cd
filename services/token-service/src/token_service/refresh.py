"""Redeeming a grant, for a caller that holds its lease, and storing what came back.

The rule: a grant is redeemed by one replica at a time (the lease), and what the provider
gave back is written with compare-and-set on the grant's version before any of it is handed
out. If the write loses (another writer changed the grant meanwhile: a replica that took an
expired lease over, a new sign-in, a deletion), the newer record is the truth: this replica
hands out the token stored there, or says why there is none — never a token of the grant
it read before.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    GrantStatus,
    Principal,
    TokenReauthorizationRequired,
    TokenRecovered,
    TokenRefreshed,
    TokenRefreshFailed,
    TokenResource,
)
from fleetmail_contracts.transports import resource_of_scopes
from fleetmail_runtime.telemetry import SpanScope
from opentelemetry.trace import SpanKind

from .domain import grant_id, predicted_death
from .errors import (
    ConfigurationError,
    NoGrant,
    ProviderUnavailable,
    ReauthorizationRequired,
    RefreshContended,
)
from .memory import TokenMemory
from .model import CachedToken, IssuedToken, StoredGrant, TokenResult
from .ports import Clock, EventPublisher, GrantStore, IdentityProvider, TenantReader
from .settings import TokenSettings
from .telemetry import REFRESHES, tracer

log = logging.getLogger(__name__)


class Refresher:
    def __init__(
        self,
        settings: TokenSettings,
        grants: GrantStore,
        tenants: TenantReader,
        identity: IdentityProvider,
        events: EventPublisher,
        memory: TokenMemory,
        clock: Clock,
        owner: str,
    ) -> None:
        self.settings = settings
        self.grants = grants
        self.tenants = tenants
        self.identity = identity
        self.events = events
        self.memory = memory
        self.clock = clock
        self.owner = owner

    async def refresh(self, grant: StoredGrant, resource: TokenResource | None = None) -> CachedToken:
        """Redeem the grant for `resource` (None: the one its scopes were consented for, as
        keep-alive does) and store the result; the caller holds the lease, and the store
        releases it with the write."""
        principal = grant.principal
        tenant = await self.tenants.get(principal.tenant_id)
        if resource is None:
            resource = resource_of_scopes(grant.provider, grant.scopes)
        labels = {"provider": grant.provider.value, "flow": grant.flow.value}
        span = tracer.start_span(
            "oauth2 token refresh", kind=SpanKind.CLIENT, attributes={**labels, "tenant": principal.tenant_id}
        )
        await self.stamp_legacy(grant, tenant)
        try:
            with SpanScope(span):
                result = await self._redeem(grant, tenant, resource)
        except ReauthorizationRequired as exc:
            REFRESHES.add(1, {**labels, "result": "reauthorization_required"})
            await self.mark_dead(grant, exc)
            raise
        except ProviderUnavailable as exc:
            REFRESHES.add(1, {**labels, "result": "provider_unavailable"})
            await self._failing_streak(grant, exc)
            raise
        REFRESHES.add(1, {**labels, "result": "ok"})
        return await self._store(grant, tenant, result, resource)

    async def stamp_legacy(self, grant: StoredGrant, tenant: TenantSettings) -> None:
        """Migration, once per grant: a delegated grant stored without its authority (the
        first release did not record it) is given its tenant's current authority and client
        (allowlist checked), if its client id, when it has one, is the tenant's. From then on
        it is held to them: a later change of the tenant's identity settings asks for a new
        sign-in instead of carrying the grant along."""
        if grant.authority is not None or grant.flow is AcquisitionFlow.APP_ONLY:
            return
        authority, client_id = await self.identity.issuer(tenant, grant.provider)
        if await self.grants.stamp_issuer(grant.principal, authority, client_id):
            log.info(
                "grant %s is now bound to %s (client %s)", grant_id(grant.principal), authority, client_id
            )

    async def _redeem(
        self, grant: StoredGrant, tenant: TenantSettings, resource: TokenResource
    ) -> TokenResult:
        """One call to the provider's token endpoint for this grant."""
        if grant.flow is AcquisitionFlow.APP_ONLY:
            try:
                return (await self.identity.app_only_token(tenant, grant.principal, resource)).result
            except ConfigurationError as exc:
                # The app's credentials were refused: as dead as a revoked grant until an
                # administrator stores working ones (which drops this grant).
                raise ReauthorizationRequired(str(exc), "app_credentials_refused") from exc
        if grant.refresh_token is None:
            raise ReauthorizationRequired(f"the grant for {grant.principal.address} has no refresh token")
        return await self.identity.refresh(tenant, grant, resource)

    async def _store(
        self, grant: StoredGrant, tenant: TenantSettings, result: TokenResult, resource: TokenResource
    ) -> CachedToken:
        principal = grant.principal
        if self.settings.fault_exit_after_redeem:
            log.warning("fault hook: exiting between the provider's answer and the write")
            os._exit(17)
        now = self.clock()
        issued = IssuedToken(
            result.access_token,
            now,
            now + timedelta(seconds=result.expires_in),
            result.refresh_token,
            resource,
        )
        death = (
            None
            if grant.flow is AcquisitionFlow.APP_ONLY
            else predicted_death(grant.provider, now, grant.acquired_at, tenant.identity.google_testing_mode)
        )
        # The rotated refresh token is stored before the new access token is handed out.
        if not await self.grants.record_refresh(grant, issued, death, self.owner):
            log.warning("grant %s changed while refreshing; the newer record wins", grant_id(principal))
            await self.grants.release_lease(principal, self.owner)
            return await self._newer(principal)
        token = CachedToken.issued(issued, grant.provider, principal.address)
        self.memory.remember(principal, token)
        # Each event its own id: the events stream drops a message whose id it has seen.
        base = {"principal": principal, "provider": grant.provider, "occurred_at": now}
        if self.memory.stop_failing(principal):
            await self.events.publish(TokenRecovered(event_id=uuid.uuid4().hex, **base))
        rotated = result.refresh_token is not None and result.refresh_token != grant.refresh_token
        await self.events.publish(
            TokenRefreshed(event_id=uuid.uuid4().hex, **base, rotated=rotated, predicted_death_at=death)
        )
        return token

    async def _newer(self, principal: Principal) -> CachedToken:
        """The token of the record that won the compare-and-set, or why there is none."""
        self.memory.forget(principal)
        current = await self.grants.get(principal)
        if current is None:
            raise NoGrant(f"the grant for {principal.address} was deleted while it was being refreshed")
        if current.status is not GrantStatus.ACTIVE:
            raise ReauthorizationRequired(f"the grant for {principal.address} needs re-authorisation")
        token = CachedToken.of(current)
        if token is None or self.memory.due(token, self.clock()):
            raise RefreshContended("the grant changed while it was being refreshed; try again", 1.0)
        self.memory.remember(principal, token)
        return token

    async def _failing_streak(self, grant: StoredGrant, exc: ProviderUnavailable) -> None:
        """One event when a streak of transient failures begins, not one per attempt."""
        if not self.memory.start_failing(grant.principal):
            return
        await self.events.publish(
            TokenRefreshFailed(
                event_id=uuid.uuid4().hex,
                principal=grant.principal,
                provider=grant.provider,
                occurred_at=self.clock(),
                error=str(exc),
                retry_after_s=exc.retry_after_s,
            )
        )

    async def mark_dead(
        self, grant: StoredGrant, exc: ReauthorizationRequired, *, if_unchanged: bool = False
    ) -> bool:
        """The grant needs a new sign-in: said once, with why, to whoever alerts on it.
        `if_unchanged`: only if the record is still the one read (a decision taken on a read
        grant, which a new sign-in meanwhile must not lose); False when it was not."""
        self.memory.forget(grant.principal)
        self.memory.stop_failing(grant.principal)
        marked = await self.grants.set_status(
            grant.principal,
            GrantStatus.REAUTHORIZATION_REQUIRED,
            None if if_unchanged else self.owner,
            detail=str(exc),
            version=grant.version if if_unchanged else None,
        )
        if if_unchanged and not marked:
            return False
        await self.events.publish(
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
        return True
