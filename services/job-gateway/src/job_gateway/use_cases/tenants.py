"""Tenant administration: job-gateway owns every tenant's settings (MongoDB is the source of
truth) and projects them into the tenants KV bucket the other services read."""

from __future__ import annotations

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.bus import BusUnavailable, bus_errors

from ..domain import Administrator, as_seen_by, visible_tenants
from ..errors import EventBusUnavailable, TenantIdMismatch, TenantNotFound
from ..ports import TenantFeed, TenantStore


class TenantAdministration:
    def __init__(self, store: TenantStore, feed: TenantFeed) -> None:
        self.store = store
        self.feed = feed

    async def get(self, tenant_id: str) -> TenantSettings:
        tenant = await self.store.tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        return tenant

    async def save(self, tenant_id: str, settings: TenantSettings) -> TenantSettings:
        """Create or replace the tenant's settings; each save is a new revision."""
        if settings.tenant_id != tenant_id:
            raise TenantIdMismatch("the body's tenant_id must match the URL")
        existing = await self.store.tenant(tenant_id)
        revision = (existing.revision if existing else 0) + 1
        tenant = settings.model_copy(update={"revision": revision})
        await self.store.save_tenant(tenant)
        try:
            with bus_errors("the tenants bucket did not take the settings"):
                await self.feed.put(tenant)
        except BusUnavailable as exc:
            raise EventBusUnavailable(
                "the settings are saved but not yet published to the other services: save them again"
            ) from exc
        return tenant

    async def visible_to(self, admin: Administrator) -> list[TenantSettings]:
        """The tenants this key may see, as it may see them (`domain.as_seen_by`)."""
        return [as_seen_by(admin, t) for t in visible_tenants(admin, await self.store.all_tenants())]

    async def read(self, admin: Administrator, tenant_id: str) -> TenantSettings:
        """One tenant's settings, as this key may see them."""
        return as_seen_by(admin, await self.get(tenant_id))

    async def publish_all(self) -> None:
        """Make the KV bucket complete (it is a projection of the tenants collection)."""
        for tenant in await self.store.all_tenants():
            await self.feed.put(tenant)

    def provider_of(self, tenant_id: str) -> str:
        """The tenant's provider as a metric label, without a round trip."""
        cached = self.feed.cached(tenant_id)
        return cached.provider.value if cached is not None else "unknown"
