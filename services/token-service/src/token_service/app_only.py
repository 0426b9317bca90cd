"""App-only grants, and the grant a request finds: no user consent behind an app-only grant,
so it is created on first use, dropped when the tenant's app credentials change or the
tenant stops sending app-only, and never refreshed with a refresh token.

An app-only token acts for any mailbox of the directory, so the tenant's mail-domain rule
(`TenantSettings.accepts_sign_in`) binds app-only principals as it binds sign-ins: a principal
outside the tenant's mail domains gets no token, and an app-only grant already stored for one
is dropped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AcquisitionFlow, GrantStatus, Principal, TokenAcquired
from fleetmail_contracts.transports import TRANSPORT_RESOURCE

from .errors import NoGrant, OutsideTenant, ReauthorizationRequired
from .memory import TokenMemory
from .model import CachedToken, IssuedToken, StoredGrant
from .ports import Clock, EventPublisher, GrantStore, IdentityProvider, TenantReader


def sends_app_only(tenant: TenantSettings) -> bool:
    return tenant.oauth_enabled and tenant.identity.app_only


def outside_tenant(tenant: TenantSettings, address: str) -> str:
    listed = ", ".join(tenant.effective_mail_domains()) or "none"
    return (
        f"{address} is not in the mail domains of tenant {tenant.tenant_id!r} ({listed}): only its "
        "own people sign in for it; the owner key lists its domains (mail_domains)"
    )


def check_within_tenant(tenant: TenantSettings, principal: Principal) -> None:
    if not tenant.accepts_sign_in(principal.address):
        raise OutsideTenant(outside_tenant(tenant, principal.address))


@dataclass
class AppOnlyGrants:
    grants: GrantStore
    tenants: TenantReader
    identity: IdentityProvider
    events: EventPublisher
    memory: TokenMemory
    clock: Clock

    async def live_grant(self, principal: Principal) -> StoredGrant:
        """The principal's active grant — an app-only one created when the tenant sends
        app-only — or `NoGrant` / `ReauthorizationRequired`."""
        grant = await self.grants.get(principal)
        if grant is not None and grant.flow is AcquisitionFlow.APP_ONLY:
            tenant = await self.tenants.get(principal.tenant_id)
            if not sends_app_only(tenant) or not tenant.accepts_sign_in(principal.address):
                # The tenant left app-only sending, or the address is not its own (any more):
                # the app-only grant goes.
                await self.grants.delete(principal)
                self.memory.forget(principal)
                grant = None
        if grant is None:
            tenant = await self.tenants.get(principal.tenant_id)
            if not sends_app_only(tenant):
                raise NoGrant(f"no {principal.kind.value} grant for {principal.address}")
            grant = await self.acquire(principal, tenant)
        if grant.status is not GrantStatus.ACTIVE:
            raise ReauthorizationRequired(
                grant.status_detail or f"the grant for {principal.address} needs re-authorisation"
            )
        return grant

    async def acquire(self, principal: Principal, tenant: TenantSettings) -> StoredGrant:
        """Create an app-only grant: no refresh token, nothing a user's consent can lapse on.
        Only for an address in the tenant's mail domains, checked before the provider is asked."""
        check_within_tenant(tenant, principal)
        redeemed = await self.identity.app_only_token(tenant, principal)
        now = self.clock()
        expires_at = now + timedelta(seconds=redeemed.result.expires_in)
        issued = IssuedToken(
            redeemed.result.access_token, now, expires_at, None, TRANSPORT_RESOURCE[tenant.transport]
        )
        await self.grants.replace(
            principal,
            tenant.provider,
            issued,
            redeemed.result.scopes,
            AcquisitionFlow.APP_ONLY,
            redeemed.authority,
            redeemed.client_id,
            None,
        )
        self.memory.remember(principal, CachedToken.issued(issued, tenant.provider, principal.address))
        await self.events.publish(
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
                self.memory.forget(grant.principal)
