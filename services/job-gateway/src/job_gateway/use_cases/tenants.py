"""Tenant administration: job-gateway owns every tenant's settings (MongoDB is the source of
truth) and projects them into the tenants KV bucket the other services read.

The settings are guarded: identity endpoints must be on the operator's allowlist
(`FLEETMAIL_IDENTITY_ALLOWED_ORIGINS`; 422 otherwise) and the directory must be a directory
id, a domain name or an Entra alias (422 otherwise), and a tenant's mail domains — whose
people may sign in for it — are listed by the owner key only (403 for any other key). A save
that does not name them keeps the tenant's current list; a tenant saved before the list
existed is given its administrator address's domain at its first save, before anything else
changes (so a new administrator address does not bring a new domain with it).

The destinations a tenant names — webhook URLs, its SMTP server, its proxy — are refused (422)
when they are a loopback, link-local, private or other special-purpose address the operator
does not allow (`FLEETMAIL_OUTBOUND_ALLOWED_RANGES`), written as a literal or as a name that
is special by definition (`localhost`); names are resolved and checked again by the service
that connects, every time it does. Alert recipients must each be one plain address
(`user@example.com`): no display name, no list, no line break (422 otherwise). OAuth 2.0 is
turned on only with the administrator's e-mail address set, as on the device (422 otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from fleetmail_contracts.addresses import is_address
from fleetmail_contracts.tenants import TenantSettings, legacy_mail_domains
from fleetmail_contracts.tokens import GrantView
from fleetmail_runtime.bus import BusUnavailable, bus_errors
from fleetmail_runtime.identity_endpoints import (
    DEFAULT_IDENTITY_ORIGINS,
    authority_host_refusal,
    directory_name_refusal,
    endpoint_refusal,
)
from fleetmail_runtime.outbound import OutboundPolicy

from ..domain import Administrator, Role, as_seen_by, redact_url, visible_tenants
from ..errors import (
    AdministratorAddressRequired,
    EventBusUnavailable,
    Forbidden,
    IdentityEndpointRefused,
    InvalidAddress,
    OutboundDestinationRefused,
    TenantExists,
    TenantIdMismatch,
    TenantNotFound,
)
from ..ports import TenantFeed, TenantStore
from .tenant_preview import settings_consequences


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


def url_host_refusal(
    url: str, policy: OutboundPolicy, schemes: tuple[str, ...], shown: str | None = None
) -> str | None:
    """Why a URL a tenant names is refused, or None; it is named as `shown` (a proxy URL
    without its credentials), else as given."""
    named = repr(shown if shown is not None else url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return f"{named} is not a URL (or its port is not a number)"
    if parts.scheme.lower() not in schemes or not parts.hostname:
        return f"{named} is not an absolute {' or '.join(schemes)} URL"
    return policy.refusal_of_host(parts.hostname)


def check_destinations(settings: TenantSettings, policy: OutboundPolicy) -> None:
    """Refuse destinations that are special-purpose addresses the operator does not allow."""
    refusals: list[str] = []
    for index, webhook in enumerate(settings.notifications.webhooks):
        if (why := url_host_refusal(webhook.url, policy, ("http", "https"))) is not None:
            refusals.append(f"notifications.webhooks[{index}].url: {why}")
    if settings.smtp is not None and (why := policy.refusal_of_host(settings.smtp.host)) is not None:
        refusals.append(f"smtp.host: {why}")
    proxy = settings.proxy_url
    if proxy and (why := url_host_refusal(proxy, policy, ("http", "https"), shown=redact_url(proxy))):
        refusals.append(f"proxy_url: {why}")
    if refusals:
        raise OutboundDestinationRefused("; ".join(refusals))


def check_oauth_administrator(settings: TenantSettings) -> None:
    """OAuth 2.0 sends the administrator functions, and signs in [Acquire], as the
    administrator's address: on without one, nothing could be sent or acquired."""
    if settings.oauth_enabled and not (settings.administrator_address or "").strip():
        raise AdministratorAddressRequired(
            "OAuth 2.0 cannot be turned on without the administrator's e-mail address: set "
            "administrator_address (the Microsoft or Google address the administrator signs in "
            "with) in the same save, or leave oauth_enabled off"
        )


def check_alert_recipients(settings: TenantSettings) -> None:
    """Each alert recipient is one plain address: a list, a display name or a line break would
    add recipients to, or break, every alert mail sent through the operator's relay."""
    refused = [
        f"notifications.email_recipients[{index}]: {recipient!r} is not a single e-mail address "
        "(user@example.com, without a display name, comma or line break)"
        for index, recipient in enumerate(settings.notifications.email_recipients)
        if not is_address(recipient)
    ]
    if refused:
        raise InvalidAddress("; ".join(refused))


def check_send_as(settings: TenantSettings) -> None:
    """Every send-as entry, user and address alike, is in the tenant's mail domains: a login
    user sends only as the tenant's own addresses, never as another tenant's or anyone's."""
    domains = settings.effective_mail_domains()
    refused = [
        f"send_as[{user!r}]: {address!r} is not in the tenant's mail domains ({', '.join(domains) or 'none'})"
        for user, addresses in settings.send_as.items()
        for address in (user, *addresses)
        if not settings.accepts_sign_in(address)
    ]
    if refused:
        raise InvalidAddress("; ".join(refused))


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
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.allowed_origins = allowed_origins
        self.outbound = outbound or OutboundPolicy()

    async def get(self, tenant_id: str) -> TenantSettings:
        tenant = await self.store.tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        return tenant

    async def _checked(
        self, tenant_id: str, settings: TenantSettings, admin: Administrator
    ) -> tuple[TenantSettings | None, TenantSettings]:
        """The tenant's settings now (None: a new tenant) and what a save stores, every rule
        checked."""
        if settings.tenant_id != tenant_id:
            raise TenantIdMismatch("the body's tenant_id must match the URL")
        check_oauth_administrator(settings)
        check_identity_endpoints(settings, self.allowed_origins)
        check_destinations(settings, self.outbound)
        check_alert_recipients(settings)
        existing = await self.store.tenant(tenant_id)
        revision = (existing.revision if existing else 0) + 1
        domains = mail_domains_to_save(admin, existing, settings)
        tenant = settings.model_copy(update={"revision": revision, "mail_domains": domains})
        check_send_as(tenant)
        return existing, tenant

    async def preview(
        self, tenant_id: str, settings: TenantSettings, admin: Administrator, grants: Sequence[GrantView]
    ) -> list[str]:
        """What saving these settings would do (`settings_consequences`), checked by the same
        rules as `save` (a refusal is raised here, before anything is saved)."""
        existing, tenant = await self._checked(tenant_id, settings, admin)
        return settings_consequences(existing, tenant, grants)

    async def create(self, tenant_id: str, display_name: str, admin: Administrator) -> TenantSettings:
        """A new tenant with the device's defaults (OAuth 2.0 OFF, Microsoft); an id in use is
        refused rather than replaced."""
        if await self.store.tenant(tenant_id) is not None:
            raise TenantExists(f"tenant {tenant_id!r} exists already: open it, or choose another id")
        return await self.save(
            tenant_id, TenantSettings(tenant_id=tenant_id, display_name=display_name), admin
        )

    async def save(self, tenant_id: str, settings: TenantSettings, admin: Administrator) -> TenantSettings:
        """Create or replace the tenant's settings; each save is a new revision."""
        _, tenant = await self._checked(tenant_id, settings, admin)
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

    async def current(self, tenant_id: str) -> TenantSettings | None:
        """The tenant's settings as the other services see them: from the bucket's cache,
        else the database (a tenant this replica has not seen yet); None: no such tenant."""
        return self.feed.cached(tenant_id) or await self.store.tenant(tenant_id)

    def provider_of(self, tenant_id: str) -> str:
        """The tenant's provider as a metric label, without a round trip."""
        cached = self.feed.cached(tenant_id)
        return cached.provider.value if cached is not None else "unknown"
