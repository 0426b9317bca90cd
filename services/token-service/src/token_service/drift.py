"""Grants that no longer fit their tenant's settings: the administrator address or the provider
changed since the grant was acquired (`fleetmail_runtime.drift.settings_drift`, the rule the
console's preview shows before a change is saved).

Such a grant is marked as needing a new sign-in, with why, the moment token-service sees it:
when the tenant's settings change (`tenant_changed`, from the tenants bucket's watch), at a
token request (`grant_for`: no token of the old mailbox is handed out, not even one this
replica holds in memory), and at the keep-alive sweep (`settle`). An app-only grant needs no
sign-in: it is dropped, and the next request creates one for the new settings.

Each replica sees the change; the mark is a compare-and-set on the grant's version, so one
of them says it (one event, one alert), and a new sign-in taken meanwhile is never marked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AcquisitionFlow, GrantStatus, Principal, PrincipalKind
from fleetmail_runtime.drift import settings_drift

from .app_only import AppOnlyGrants
from .errors import ReauthorizationRequired, SettingsChanging
from .memory import TokenMemory
from .model import CachedToken, StoredGrant
from .ports import GrantStore, TenantReader
from .refresh import Refresher

log = logging.getLogger(__name__)


def drift_of(grant: StoredGrant, tenant: TenantSettings) -> ReauthorizationRequired | None:
    found = settings_drift(grant.principal, grant.provider, tenant.administrator_address, tenant.provider)
    return None if found is None else ReauthorizationRequired(found[1], found[0])


@dataclass
class Drift:
    grants: GrantStore
    tenants: TenantReader
    live: AppOnlyGrants
    refresher: Refresher
    memory: TokenMemory

    async def settle(self, grant: StoredGrant, tenant: TenantSettings) -> bool:
        """True when the grant fits the tenant's settings. An app-only grant that does not is
        dropped (False); a delegated one is marked and `ReauthorizationRequired` raised."""
        why = drift_of(grant, tenant)
        if why is None:
            return True
        if grant.flow is AcquisitionFlow.APP_ONLY:
            await self.grants.delete(grant.principal)
            self.memory.forget(grant.principal)
            return False
        if grant.status is GrantStatus.ACTIVE and await self.refresher.mark_dead(
            grant, why, if_unchanged=True
        ):
            log.info("grant of tenant %s needs a new sign-in: %s", grant.principal.tenant_id, why.error)
        raise why

    async def grant_for(self, principal: Principal) -> StoredGrant:
        """The principal's live grant, if it still fits its tenant's settings (`live_grant`)."""
        grant = await self.live.live_grant(principal)
        tenant = await self.tenants.get(principal.tenant_id)
        if not await self.settle(grant, tenant):
            grant = await self.live.live_grant(principal)  # app-only: made again for the new settings
        if grant.principal.address.casefold() != principal.address.casefold():
            raise SettingsChanging(
                f"the administrator grant is {grant.principal.address}'s, the request names "
                f"{principal.address}: the tenant's settings are changing; try again",
                1.0,
            )
        return grant

    async def fits(self, principal: Principal, token: CachedToken) -> bool:
        """Whether a token this replica holds may still be handed out (no store read)."""
        tenant = await self.tenants.get(principal.tenant_id)
        holder = Principal(
            tenant_id=principal.tenant_id, kind=principal.kind, address=token.address or principal.address
        )
        return settings_drift(holder, token.provider, tenant.administrator_address, tenant.provider) is None

    async def tenant_changed(self, before: TenantSettings | None, after: TenantSettings) -> None:
        """The tenant's settings changed: its grants that no longer fit are marked now, not at
        their next use (the administrator sees why at once, in the token status and an alert)."""
        if before is None or (
            before.administrator_address == after.administrator_address and before.provider == after.provider
        ):
            return
        for grant in await self.grants.list_tenant(after.tenant_id):
            if grant.principal.kind is PrincipalKind.USER and before.provider == after.provider:
                continue
            try:
                await self.settle(grant, after)
            except ReauthorizationRequired:
                pass  # marked (here or by another replica) and said
