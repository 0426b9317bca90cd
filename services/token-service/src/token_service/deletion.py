"""Deleting grants: the administrator's [Delete] (one user's, or every user's of a tenant at
once), Auto Delete when a device reports that its user logged out or that it reset itself
(for tenants that ask for it), and the lapse of a login user's grant left unused."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fleetmail_contracts.tokens import Principal, PrincipalKind, TokenDeleted

from .errors import ConfigurationError
from .memory import TokenMemory
from .model import StoredGrant
from .ports import Clock, EventPublisher, GrantStore, IdentityProvider, TenantReader
from .telemetry import GRANTS_DELETED

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
        await self._deleted(grant, reason)
        return True

    async def lapse(self, principal: Principal, active_before: datetime) -> bool:
        """Delete a login user's grant unused since `active_before` (reason `idle`), unless it
        was used or signed in again meanwhile."""
        grant = await self.grants.get(principal)
        if grant is None or not await self.grants.delete_idle(principal, active_before):
            return False
        self.memory.forget(principal)
        await self._deleted(grant, "idle")
        return True

    async def delete_users(self, tenant_id: str, reason: str = "requested") -> int:
        """[Delete] of Refresh Tokens (User) for every login user of the tenant; how many."""
        users = [g.principal for g in await self.grants.list_tenant(tenant_id)]
        return await self.delete_many((p for p in users if p.kind is PrincipalKind.USER), reason)

    async def delete_many(self, principals: Iterable[Principal], reason: str) -> int:
        deleted = 0
        for principal in principals:
            deleted += await self.delete(principal, reason)
        return deleted

    async def _deleted(self, grant: StoredGrant, reason: str) -> None:
        """Revoke where the provider can, and say so."""
        principal = grant.principal
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
        GRANTS_DELETED.add(1, {"kind": principal.kind.value, "reason": reason})
        log.info("deleted the %s grant of tenant %s (%s)", principal.kind.value, principal.tenant_id, reason)

    async def on_device_event(self, tenant_id: str, kind: str, users: Iterable[str]) -> int:
        """Auto Delete, if the tenant has it on: the user who logged out loses their grant;
        an auto reset deletes the grants of the users whose sessions were on that device (the
        one logged in, and each whose sign-in or jobs came from it since its last reset) and
        nobody else's. How many were deleted."""
        named = list(dict.fromkeys(u.casefold() for u in users if u and 3 <= len(u) <= 320))
        if not named or not tenant_id:
            return 0
        try:
            tenant = await self.tenants.get(tenant_id)
        except ConfigurationError:
            return 0  # an unknown tenant has no grants to delete
        if not tenant.auto_delete:
            return 0
        reason = "user_logged_out" if kind == "user_logged_out" else "auto_reset"
        principals = (Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=u) for u in named)
        return await self.delete_many(principals, reason)
