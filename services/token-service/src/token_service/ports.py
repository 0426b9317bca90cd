"""What token-service's use cases need from the world, as `Protocol`s.

The real adapters live in `adapters/` (MongoDB, MSAL and google-auth, NATS); in-memory fakes
with the same semantics live in the test suite, and the same contract tests run on both.
Time is a port too: the clock says what time it is and the sleeper waits, so the lease and
keep-alive rules are tested without waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionState,
    AcquisitionStatus,
    GrantStatus,
    GrantSummaryReply,
    Principal,
    Provider,
    TokenEventBase,
    TokenResource,
)

from .model import AuthorizationRequest, ClaimedFlow, IssuedToken, Redeemed, StoredGrant, TokenResult

Clock = Callable[[], datetime]
"""The time now, timezone-aware (UTC)."""

Sleeper = Callable[[float], Awaitable[None]]
"""Waits this many seconds (`asyncio.sleep` in the service; a fake clock's `sleep` in tests)."""


class GrantStore(Protocol):
    """Grants, one per principal, with a refresh lease and a version for compare-and-set.

    Every method may raise `StoreUnavailable`.
    """

    async def get(self, principal: Principal) -> StoredGrant | None: ...

    async def replace(
        self,
        principal: Principal,
        provider: Provider,
        issued: IssuedToken,
        scopes: tuple[str, ...],
        flow: AcquisitionFlow,
        authority: str | None,
        client_id: str | None,
        predicted_death_at: datetime | None,
    ) -> None:
        """Store a freshly acquired grant, replacing any earlier one (its version moves on)."""

    async def take_lease(self, principal: Principal, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take the refresh lease unless someone holds a live one; False when they do."""

    async def release_lease(self, principal: Principal, owner: str) -> None:
        """Release the lease if `owner` holds it; nobody else's."""

    async def record_refresh(
        self, grant: StoredGrant, issued: IssuedToken, predicted_death_at: datetime | None, owner: str
    ) -> bool:
        """Store a refresh if the record is still at `grant.version` (and release the lease);
        False, writing nothing, when another writer got there first."""

    async def set_status(
        self,
        principal: Principal,
        status: GrantStatus,
        owner: str | None = None,
        *,
        detail: str | None = None,
        version: int | None = None,
    ) -> bool:
        """A grant that is no longer active loses its access token and keeps `detail` (why);
        `owner` releases the lease; with `version`, only a record still at that version is
        changed. False when nothing was changed."""

    async def record_use(self, principal: Principal, now: datetime) -> None:
        """Someone sent with the grant at `now` (kept as its `last_used_at`, never moved back)."""

    async def delete_idle(self, principal: Principal, active_before: datetime) -> bool:
        """Delete a grant nobody signed in to or sent with after `active_before`; False when
        there was none, or it was used meanwhile."""

    async def user_activity(self) -> list[tuple[Principal, datetime]]:
        """Every user grant (any status) and when it was last active (signed in or used)."""

    async def stamp_issuer(self, principal: Principal, authority: str, client_id: str) -> bool:
        """Migration: give a grant stored without an authority this authority, and this client
        id unless it has one; False (nothing written) when it has an authority already or
        another client id."""

    async def delete(self, principal: Principal) -> bool: ...

    async def active_principals(self) -> list[Principal]: ...

    async def announce_expiring(self, principal: Principal, now: datetime, announce: bool) -> bool:
        """Record that the coming death was announced (True once), or forget it when `announce`
        is False (the death is no longer close)."""

    async def list_tenant(self, tenant_id: str) -> list[StoredGrant]: ...

    async def fleet_summary(self, tenant_ids: Sequence[str] | None) -> GrantSummaryReply:
        """Every administrator grant of these tenants (None: of all) and, per tenant, how many
        user grants need a new sign-in; no secret read."""
        ...


class AcquisitionStore(Protocol):
    """Sign-ins in progress, so any replica can answer for them and take a device-code flow
    over when its polling replica stops. Every method may raise `StoreUnavailable`."""

    async def create(
        self,
        acquisition_id: str,
        principal: Principal,
        provider: Provider,
        flow_kind: AcquisitionFlow,
        expires_at: datetime,
        oauth_state: str | None = None,
        flow: dict[str, Any] | None = None,
        poller: tuple[str, datetime] | None = None,
    ) -> None: ...

    async def renew_poller(self, acquisition_id: str, owner: str, expires_at: datetime) -> bool:
        """Keep polling a device-code flow: False when another replica has taken it over."""

    async def release_poller(self, acquisition_id: str, owner: str, now: datetime) -> None:
        """This replica stops: another may take the flow over at once."""

    async def orphaned_device_flows(self, now: datetime) -> list[str]:
        """Pending device-code flows whose poller stopped renewing."""

    async def take_over(
        self, acquisition_id: str, owner: str, now: datetime, expires_at: datetime
    ) -> ClaimedFlow | None:
        """Become the poller of an orphaned flow; None if another replica won."""

    async def claim(self, oauth_state: str, now: datetime) -> ClaimedFlow | None:
        """The authorization-code flow a redirect belongs to, once, before it expires."""

    async def finish(self, acquisition_id: str, state: AcquisitionState, detail: str | None) -> None: ...

    async def status(self, acquisition_id: str, tenant_id: str, now: datetime) -> AcquisitionStatus: ...


class IdentityProvider(Protocol):
    """The token endpoints of the tenant's provider (Microsoft or Google), for its app.

    Raises `ReauthorizationRequired` (terminal), `ProviderUnavailable` (transient) or
    `ConfigurationError` (the app registration or a setting is wrong), classified by the
    provider's error codes, never by their wording.
    """

    async def refresh(
        self, tenant: TenantSettings, grant: StoredGrant, resource: TokenResource
    ) -> TokenResult:
        """Redeem the grant's refresh token for `resource` (Microsoft rotates it; Google does not)."""

    async def issuer(self, tenant: TenantSettings, provider: Provider) -> tuple[str, str]:
        """The authority (Microsoft: `<host>/<directory>`; Google: the token URI) and client id
        the tenant's settings name now; what a grant signed in today would be bound to."""

    async def app_only_token(
        self, tenant: TenantSettings, principal: Principal, resource: TokenResource | None = None
    ) -> Redeemed:
        """A token in the app's own name for `resource` (None: the tenant's transport's):
        client credentials, or a Google service account acting for the principal."""

    async def start_device_flow(self, tenant: TenantSettings) -> dict[str, Any]:
        """A device code (MSAL's flow: user_code, verification_uri, interval, expires_in…)."""

    async def poll_device_flow(self, tenant: TenantSettings, flow: dict[str, Any]) -> Redeemed | None:
        """One poll; None while the user has not finished signing in."""

    async def start_authorization(
        self, tenant: TenantSettings, principal: Principal, redirect_uri: str
    ) -> AuthorizationRequest: ...

    async def redeem_authorization(
        self, tenant: TenantSettings, provider: Provider, flow: dict[str, Any], state: str, code: str
    ) -> Redeemed: ...

    async def revoke(self, tenant: TenantSettings, grant: StoredGrant) -> None:
        """Revoke the grant where the provider can (Google); a courtesy that never fails."""


class TenantReader(Protocol):
    async def get(self, tenant_id: str) -> TenantSettings:
        """The tenant's settings; raises `UnknownTenant`."""


class EventPublisher(Protocol):
    async def publish(self, event: TokenEventBase) -> None:
        """Publish a token event (deduplicated by its `event_id`); may raise `BusUnavailable`."""
