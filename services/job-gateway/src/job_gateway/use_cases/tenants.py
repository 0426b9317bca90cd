"""Tenant administration: job-gateway owns every tenant's settings (MongoDB is the source of
truth) and projects them into the tenants KV bucket the other services read.

Two settings are guarded: identity endpoints must be on the operator's allowlist
(`FLEETMAIL_IDENTITY_ALLOWED_ORIGINS`; 422 otherwise) and the directory must be a directory
id, a domain name or an Entra alias (422 otherwise), and a tenant's mail domains — whose
people may sign in for it — are listed by the owner key only (403 for any other key). A save
that does not name them keeps the tenant's current list; a tenant saved before the list
existed is given its administrator address's domain at its first save, before anything else
changes (so a new administrator address does not bring a new domain with it).
"""

from __future__ import annotations

from fleetmail_contracts.tenants import TenantSettings, legacy_mail_domains
from fleetmail_runtime.bus import BusUnavailable, bus_errors
from fleetmail_runtime.identity_endpoints import (
    DEFAULT_IDENTITY_ORIGINS,
    authority_host_refusal,
    directory_name_refusal,
    endpoint_refusal,
)

from ..domain import Administrator, Role, as_seen_by, visible_tenants
from ..errors import (
    EventBusUnavailable,
    Forbidden,
    IdentityEndpointRefused,
    TenantIdMismatch,
    TenantNotFound,
)
from ..ports import TenantFeed, TenantStore


def check_identity_endpoints(settings: TenantSettings, allowed: tuple[str, ...]) -> None:
    identity = settings.identity
    refusals = [
        f"identity.{name}: {why}"
        for name, value, rule in (
            ("authority_host", identity.authority_host, authority_host_refusal),
            ("token_uri", identity.token_uri, endpoint_refusal),
        )
        if value is not None and (why := rule(value, allowed)) is not None
    ]
    if identity.directory is not None and (why := directory_name_refusal(identity.directory)) is not None:
        refusals.append(f"identity.directory: {why}")
    if refusals:
        raise IdentityEndpointRefused("; ".join(refusals))


def mail_domains_to_save(
    admin: Administrator, existing: TenantSettings | None, settings: TenantSettings
) -> tuple[str, ...]:
    """The mail domains a save stores: the owner's list, else the tenant's current one."""
    if existing is None:
        current = None
    elif existing.mail_domains is None:
        current = legacy_mail_domains(existing.administrator_address)
    else:
        current = existing.mail_domains
    if admin.role is Role.OWNER:
        if settings.mail_domains is not None:
            return settings.mail_domains
        return current if current is not None else legacy_mail_domains(settings.administrator_address)
    if settings.mail_domains is not None and settings.mail_domains != (current or ()):
        raise Forbidden(
            "only the owner key lists a tenant's mail domains (they decide whose people may sign "
            "in for it); save without mail_domains to keep the current list"
        )
    return current or ()


class TenantAdministration:
    def __init__(
        self,
        store: TenantStore,
        feed: TenantFeed,
        allowed_origins: tuple[str, ...] = DEFAULT_IDENTITY_ORIGINS,
    ) -> None:
        self.store = store
        self.feed = feed
        self.allowed_origins = allowed_origins

    async def get(self, tenant_id: str) -> TenantSettings:
        tenant = await self.store.tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        return tenant

    async def save(self, tenant_id: str, settings: TenantSettings, admin: Administrator) -> TenantSettings:
        """Create or replace the tenant's settings; each save is a new revision."""
        if settings.tenant_id != tenant_id:
            raise TenantIdMismatch("the body's tenant_id must match the URL")
        check_identity_endpoints(settings, self.allowed_origins)
        existing = await self.store.tenant(tenant_id)
        revision = (existing.revision if existing else 0) + 1
        domains = mail_domains_to_save(admin, existing, settings)
        tenant = settings.model_copy(update={"revision": revision, "mail_domains": domains})
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
