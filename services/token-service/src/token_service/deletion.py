"""Deleting grants: the administrator's [Delete], and Auto Delete when a device reports that
its user logged out or that it reset itself (for tenants that ask for it)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from fleetmail_contracts.tokens import Principal, PrincipalKind, TokenDeleted

from .errors import ConfigurationError
from .memory import TokenMemory
from .ports import Clock, EventPublisher, GrantStore, IdentityProvider, TenantReader

log = logging.getLogger(__name__)


@dataclass
class Deletion:
    grants: GrantStore
    tenants: TenantReader
    identity: IdentityProvider
    events: EventPublisher
    memory: TokenMemory
    clock: Clock

    async def delete(self, principal: Principal, reason: str) -> bool:
        """Delete a grant, revoking it where the provider can; False when there was none."""
        grant = await self.grants.get(principal)
        deleted = await self.grants.delete(principal)
        self.memory.forget(principal)
        if grant is None or not deleted:
            return False
        if grant.refresh_token is not None:
            try:
                await self.identity.revoke(await self.tenants.get(principal.tenant_id), grant)
            except ConfigurationError as exc:
                # The grant is gone here whatever the provider knows; revocation is a courtesy.
                log.warning("did not revoke a deleted grant of tenant %s: %s", principal.tenant_id, exc)
        await self.events.publish(
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

    async def on_device_event(self, tenant_id: str, kind: str, user: str | None) -> bool:
        """Auto Delete: the user's grant goes when they log out or the device auto-resets, if
        the tenant has Auto Delete on. True when a grant was deleted."""
        if not user or not tenant_id:
            return False
        try:
            tenant = await self.tenants.get(tenant_id)
        except ConfigurationError:
            return False  # an unknown tenant has no grants to delete
        if not tenant.auto_delete:
            return False
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
        return await self.delete(principal, "user_logged_out" if kind == "user_logged_out" else "auto_reset")
