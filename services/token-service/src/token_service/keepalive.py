"""Keep-alive: the administrator's grant, and each login user's used within the tenant's
`user_token_idle_days` (90 by default), is kept alive; a user's grant left unused longer
lapses: it is deleted (event `deleted`, reason `idle`), as a device forgets the token of a
user who no longer uses it. A grant idle for `keepalive_idle_s` is redeemed, so the
provider's inactivity limit (Microsoft: 90 days) never applies; a death nothing can
prevent (Google's testing mode) is announced once, `expiring_horizon_s` ahead; a grant
whose tenant now names another authority or client than the grant was signed in with, or
whose address is not in the tenant's mail domains (a grant taken before the rule, or a
domain that left the list), or that no longer fits the tenant's administrator address or
provider (`drift.py`), is marked as needing a new sign-in, without a call (so an
administrator hears of it within one sweep, not at the grant's next refresh). A grant stored without its authority is stamped
with its tenant's current one first (a one-time migration, `Refresher.stamp_legacy`).
Idempotent, and safe on every replica at once: the redemption happens under the grant's
lease, the lapse deletes only a grant still idle."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from fleetmail_contracts.tokens import AcquisitionFlow, Principal, TokenExpiring

from .app_only import outside_tenant
from .deletion import Deletion
from .domain import (
    IDENTITY_CHANGED,
    OUTSIDE_MAIL_DOMAINS,
    expiring_soon,
    grant_bound_to,
    keepalive_due,
    user_grant_lapsed,
)
from .drift import Drift
from .errors import ReauthorizationRequired, TokenServiceError
from .ports import Clock, EventPublisher, GrantStore, IdentityProvider, TenantReader
from .refresh import Refresher
from .settings import TokenSettings

log = logging.getLogger(__name__)


class KeepAlive:
    def __init__(
        self,
        settings: TokenSettings,
        grants: GrantStore,
        drift: Drift,
        deletion: Deletion,
        refresher: Refresher,
        events: EventPublisher,
        clock: Clock,
        owner: str,
        identity: IdentityProvider,
        tenants: TenantReader,
    ) -> None:
        self.identity = identity
        self.tenants = tenants
        self.grants = grants
        self.drift = drift
        self.live = drift.live
        self.deletion = deletion
        self.refresher = refresher
        self.events = events
        self.clock = clock
        self.owner = owner
        self.idle = timedelta(seconds=settings.keepalive_idle_s)
        self.horizon = timedelta(seconds=settings.expiring_horizon_s)
        self.lease_ttl = timedelta(seconds=settings.lease_ttl_s)

    async def sweep(self) -> None:
        """Let unused user grants lapse; redeem idle grants; announce deaths that cannot be
        prevented."""
        await self._lapse()
        for principal in await self.grants.active_principals():
            try:
                await self._sweep_one(principal)
            except TokenServiceError as exc:
                log.warning(
                    "keep-alive skipped a %s grant of tenant %s: %s",
                    principal.kind.value,
                    principal.tenant_id,
                    exc,
                )

    async def _lapse(self) -> None:
        """Delete the login users' grants unused for their tenant's window, whatever their
        status (a dead one is as useless as an unused one)."""
        now = self.clock()
        for principal, active_at in await self.grants.user_activity():
            try:
                tenant = await self.tenants.get(principal.tenant_id)
                if user_grant_lapsed(active_at, now, tenant.user_token_idle_days):
                    cutoff = now - timedelta(days=tenant.user_token_idle_days)
                    await self.deletion.lapse(principal, cutoff)
            except TokenServiceError as exc:
                log.warning("the lapse check skipped a user grant of tenant %s: %s", principal.tenant_id, exc)

    async def _sweep_one(self, principal: Principal) -> None:
        grant = await self.live.live_grant(principal)
        app_only = grant.flow is AcquisitionFlow.APP_ONLY  # nothing to keep alive
        tenant = await self.tenants.get(principal.tenant_id)
        if not await self.drift.settle(grant, tenant):
            return  # an app-only grant for old settings, dropped
        if not app_only:
            if not tenant.accepts_sign_in(principal.address):
                await self.refresher.mark_dead(
                    grant,
                    ReauthorizationRequired(outside_tenant(tenant, principal.address), OUTSIDE_MAIL_DOMAINS),
                )
                return
            await self.refresher.stamp_legacy(grant, tenant)
            authority, client_id = await self.identity.issuer(tenant, grant.provider)
            if not grant_bound_to(grant.authority, grant.client_id, authority, client_id):
                await self.refresher.mark_dead(
                    grant,
                    ReauthorizationRequired(
                        f"the tenant's identity settings changed since {principal.address} signed in "
                        f"(now {authority}, client {client_id}); sign in again",
                        IDENTITY_CHANGED,
                    ),
                )
                return
        if not app_only and keepalive_due(
            grant.last_refreshed_at or grant.acquired_at, self.clock(), self.idle
        ):
            await self._keep_alive(principal)
            grant = await self.live.live_grant(principal)
        death = grant.predicted_death_at
        soon = expiring_soon(death, self.clock(), self.horizon)
        if await self.grants.announce_expiring(principal, self.clock(), soon) and death is not None:
            await self.events.publish(
                TokenExpiring(
                    event_id=uuid.uuid4().hex,
                    principal=principal,
                    provider=grant.provider,
                    occurred_at=self.clock(),
                    predicted_death_at=death,
                )
            )

    async def _keep_alive(self, principal: Principal) -> None:
        """Redeem under the lease, unless another replica did while this one was looking."""
        if not await self.grants.take_lease(principal, self.owner, self.clock(), self.lease_ttl):
            return  # someone is refreshing it right now, which is all keep-alive wants
        try:
            grant = await self.live.live_grant(principal)
            if not keepalive_due(grant.last_refreshed_at or grant.acquired_at, self.clock(), self.idle):
                await self.grants.release_lease(principal, self.owner)
                return
            await self.refresher.refresh(grant)
        except BaseException:
            await self.grants.release_lease(principal, self.owner)
            raise
