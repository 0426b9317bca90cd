"""In-memory fakes of token-service's ports, with the real adapters' semantics.

`FakeGrantStore` and `FakeAcquisitionStore` pass the same contract tests as the MongoDB
adapters (`tests/contracts/token_stores.py`): leases expire by the clock the caller passes,
a refresh is written with compare-and-set on the version. `FakeClock` is the injected clock
and sleeper: time moves only when a test moves it, and a sleeper wakes when it does.
`FakeIdentity` behaves like Microsoft's token endpoint (a refresh token rotates, the old one
still redeems; a revoked user's grants are refused for good) and counts its calls.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetmail_contracts.tenants import IdentitySettings, TenantSettings
from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionState,
    AcquisitionStatus,
    AdministratorGrantSummary,
    GrantStatus,
    GrantSummaryReply,
    Principal,
    PrincipalKind,
    Provider,
    TokenEventBase,
    TokenResource,
    UsersWaiting,
)
from token_service.adapters.credentials import TenantSecrets
from token_service.domain import grant_id, last_active
from token_service.errors import ReauthorizationRequired, StoreUnavailable, TokenServiceError, UnknownTenant
from token_service.model import (
    AuthorizationRequest,
    ClaimedFlow,
    IssuedToken,
    Redeemed,
    StoredGrant,
    TokenResult,
)
from token_service.service import TokenService
from token_service.settings import TokenSettings

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    """The clock and the sleeper: `clock()` is the time; `await clock.sleep(s)` returns once a
    test has `advance`d the time past it."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def __call__(self) -> datetime:
        return self.now

    @property
    def sleeping(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        for wake, future in self._sleepers:
            if wake <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(w, f) for w, f in self._sleepers if not f.done()]

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + timedelta(seconds=seconds), future))
        await future


async def turns(condition: Any = None, limit: int = 10_000) -> None:
    """Let other tasks run (no time passes): until `condition()` holds, or a few turns."""
    for _ in range(limit if condition is not None else 20):
        if condition is not None and condition():
            return
        await asyncio.sleep(0)
    if condition is not None and not condition():
        raise AssertionError(f"still not true after {limit} turns of the event loop")


class FakeGrantStore:
    """The `GrantStore` port in memory. `unavailable` names methods that raise `StoreUnavailable`."""

    def __init__(self) -> None:
        self._grants: dict[str, StoredGrant] = {}
        self.unavailable: set[str] = set()

    def _check(self, method: str) -> None:
        if method in self.unavailable:
            raise StoreUnavailable(f"cannot {method}: the fake store is down", 5.0)

    def _update(self, principal: Principal, **changes: Any) -> None:
        key = grant_id(principal)
        self._grants[key] = dataclasses.replace(self._grants[key], **changes)

    async def get(self, principal: Principal) -> StoredGrant | None:
        self._check("get")
        return self._grants.get(grant_id(principal))

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
        self._check("replace")
        earlier = self._grants.get(grant_id(principal))
        self._grants[grant_id(principal)] = StoredGrant(
            principal=principal,
            provider=provider,
            status=GrantStatus.ACTIVE,
            scopes=tuple(scopes),
            refresh_token=issued.refresh_token,
            version=(earlier.version if earlier else 0) + 1,
            flow=flow,
            authority=authority,
            client_id=client_id,
            acquired_at=issued.issued_at,
            last_refreshed_at=issued.issued_at,
            last_used_at=None,
            predicted_death_at=predicted_death_at,
            access_token=issued.access_token,
            access_issued_at=issued.issued_at,
            access_expires_at=issued.expires_at,
            access_resource=issued.resource,
            expiring_announced_at=earlier.expiring_announced_at if earlier else None,
        )

    async def take_lease(self, principal: Principal, owner: str, now: datetime, ttl: timedelta) -> bool:
        self._check("take_lease")
        grant = self._grants.get(grant_id(principal))
        if grant is None or (grant.lease_expires_at is not None and grant.lease_expires_at >= now):
            return False
        self._update(principal, lease_owner=owner, lease_expires_at=now + ttl)
        return True

    async def release_lease(self, principal: Principal, owner: str) -> None:
        self._check("release_lease")
        grant = self._grants.get(grant_id(principal))
        if grant is not None and grant.lease_owner == owner:
            self._update(principal, lease_owner=None, lease_expires_at=None)

    async def record_refresh(
        self, grant: StoredGrant, issued: IssuedToken, predicted_death_at: datetime | None, owner: str
    ) -> bool:
        self._check("record_refresh")
        current = self._grants.get(grant_id(grant.principal))
        if current is None or current.version != grant.version:
            return False
        self._update(
            grant.principal,
            status=GrantStatus.ACTIVE,
            access_token=issued.access_token,
            access_issued_at=issued.issued_at,
            access_expires_at=issued.expires_at,
            access_resource=issued.resource,
            last_refreshed_at=issued.issued_at,
            predicted_death_at=predicted_death_at,
            status_detail=None,
            lease_owner=None,
            lease_expires_at=None,
            refresh_token=issued.refresh_token or current.refresh_token,
            version=current.version + 1,
        )
        return True

    async def set_status(
        self,
        principal: Principal,
        status: GrantStatus,
        owner: str | None = None,
        *,
        detail: str | None = None,
        version: int | None = None,
    ) -> bool:
        self._check("set_status")
        current = self._grants.get(grant_id(principal))
        if current is None or (version is not None and current.version != version):
            return False
        changes: dict[str, Any] = {"status": status, "status_detail": detail}
        if status is not GrantStatus.ACTIVE:
            changes["access_token"] = None
        if owner is not None:
            changes.update(lease_owner=None, lease_expires_at=None)
        self._update(principal, **changes)
        return True

    async def record_use(self, principal: Principal, now: datetime) -> None:
        self._check("record_use")
        current = self._grants.get(grant_id(principal))
        if current is not None and (current.last_used_at is None or current.last_used_at < now):
            self._update(principal, last_used_at=now)

    async def delete_idle(self, principal: Principal, active_before: datetime) -> bool:
        self._check("delete_idle")
        current = self._grants.get(grant_id(principal))
        if current is None or last_active(current.acquired_at, current.last_used_at) > active_before:
            return False
        del self._grants[grant_id(principal)]
        return True

    async def user_activity(self) -> list[tuple[Principal, datetime]]:
        self._check("user_activity")
        return [
            (g.principal, last_active(g.acquired_at, g.last_used_at))
            for g in self._grants.values()
            if g.principal.kind is PrincipalKind.USER
        ]

    async def stamp_issuer(self, principal: Principal, authority: str, client_id: str) -> bool:
        self._check("stamp_issuer")
        grant = self._grants.get(grant_id(principal))
        if grant is None or grant.authority is not None or grant.client_id not in (None, client_id):
            return False
        self._update(principal, authority=authority, client_id=client_id)
        return True

    async def delete(self, principal: Principal) -> bool:
        self._check("delete")
        return self._grants.pop(grant_id(principal), None) is not None

    async def active_principals(self) -> list[Principal]:
        self._check("active_principals")
        return [g.principal for g in self._grants.values() if g.status is GrantStatus.ACTIVE]

    async def announce_expiring(self, principal: Principal, now: datetime, announce: bool) -> bool:
        self._check("announce_expiring")
        grant = self._grants.get(grant_id(principal))
        if grant is None:
            return False
        if not announce:
            if grant.expiring_announced_at is not None:
                self._update(principal, expiring_announced_at=None)
            return False
        if grant.expiring_announced_at is not None:
            return False
        self._update(principal, expiring_announced_at=now)
        return True

    async def list_tenant(self, tenant_id: str) -> list[StoredGrant]:
        self._check("list_tenant")
        return [g for g in self._grants.values() if g.principal.tenant_id == tenant_id]

    async def fleet_summary(self, tenant_ids: Sequence[str] | None) -> GrantSummaryReply:
        self._check("fleet_summary")
        grants = [
            g for g in self._grants.values() if tenant_ids is None or g.principal.tenant_id in tenant_ids
        ]
        waiting = Counter(
            g.principal.tenant_id
            for g in grants
            if g.principal.kind is PrincipalKind.USER and g.status is not GrantStatus.ACTIVE
        )
        return GrantSummaryReply(
            administrators=tuple(
                AdministratorGrantSummary(
                    tenant_id=g.principal.tenant_id,
                    address=g.principal.address,
                    status=g.status,
                    predicted_death_at=g.predicted_death_at,
                )
                for g in grants
                if g.principal.kind is PrincipalKind.ADMINISTRATOR
            ),
            users_waiting=tuple(UsersWaiting(tenant_id=t, count=n) for t, n in waiting.items()),
        )


@dataclasses.dataclass
class _Acquisition:
    principal: Principal
    provider: Provider
    flow_kind: AcquisitionFlow
    expires_at: datetime
    flow: str | None
    oauth_state: str | None
    poller: tuple[str, datetime] | None
    state: AcquisitionState = AcquisitionState.PENDING
    detail: str | None = None
    used: bool = False


class FakeAcquisitionStore:
    """The `AcquisitionStore` port in memory (flows kept as JSON, as the real one seals them)."""

    def __init__(self) -> None:
        self._records: dict[str, _Acquisition] = {}

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
    ) -> None:
        if acquisition_id in self._records:
            raise ValueError(f"acquisition {acquisition_id} exists")
        self._records[acquisition_id] = _Acquisition(
            principal,
            provider,
            flow_kind,
            expires_at,
            json.dumps(flow) if flow is not None else None,
            oauth_state,
            poller,
        )

    def _claimed(self, acquisition_id: str) -> ClaimedFlow:
        record = self._records[acquisition_id]
        return ClaimedFlow(acquisition_id, record.principal, record.provider, json.loads(record.flow or "{}"))

    async def renew_poller(self, acquisition_id: str, owner: str, expires_at: datetime) -> bool:
        record = self._records.get(acquisition_id)
        if record is None or record.poller is None or record.poller[0] != owner:
            return False
        record.poller = (owner, expires_at)
        return True

    async def release_poller(self, acquisition_id: str, owner: str, now: datetime) -> None:
        record = self._records.get(acquisition_id)
        if record is not None and record.poller is not None and record.poller[0] == owner:
            record.poller = (owner, now)

    async def orphaned_device_flows(self, now: datetime) -> list[str]:
        return [
            acquisition_id
            for acquisition_id, r in self._records.items()
            if r.state is AcquisitionState.PENDING
            and r.flow_kind is AcquisitionFlow.DEVICE_CODE
            and r.expires_at > now
            and r.poller is not None
            and r.poller[1] < now
        ]

    async def take_over(
        self, acquisition_id: str, owner: str, now: datetime, expires_at: datetime
    ) -> ClaimedFlow | None:
        record = self._records.get(acquisition_id)
        if (
            record is None
            or record.state is not AcquisitionState.PENDING
            or record.poller is None
            or record.poller[1] >= now
        ):
            return None
        record.poller = (owner, expires_at)
        return self._claimed(acquisition_id)

    async def claim(self, oauth_state: str, now: datetime) -> ClaimedFlow | None:
        for acquisition_id, record in self._records.items():
            if record.oauth_state == oauth_state and not record.used and record.expires_at > now:
                record.used = True
                return self._claimed(acquisition_id)
        return None

    async def finish(self, acquisition_id: str, state: AcquisitionState, detail: str | None) -> None:
        record = self._records.get(acquisition_id)
        if record is not None:
            record.state, record.detail = state, detail

    async def status(self, acquisition_id: str, tenant_id: str, now: datetime) -> AcquisitionStatus:
        record = self._records.get(acquisition_id)
        if record is None or record.principal.tenant_id != tenant_id:
            return AcquisitionStatus(
                acquisition_id=acquisition_id,
                state=AcquisitionState.FAILED,
                detail="unknown acquisition: start a new one",
            )
        state, detail = record.state, record.detail
        if state is AcquisitionState.PENDING and record.expires_at < now:
            state, detail = AcquisitionState.EXPIRED, "the code expired before sign-in finished; start again"
        return AcquisitionStatus(
            acquisition_id=acquisition_id, state=state, principal=record.principal, detail=detail
        )

    def poller_of(self, acquisition_id: str) -> str | None:
        poller = self._records[acquisition_id].poller
        return poller[0] if poller else None


class FakeIdentity:
    """The `IdentityProvider` port: Microsoft's behaviour, in memory, with calls counted.

    `hold(n)` makes the next n refreshes wait, each until its own event is set; `fail_next`
    makes the next redemptions (refresh or app-only) raise the given errors. `refreshed`
    lists what each refresh returned, in the order the provider answered.
    """

    def __init__(self, clock: FakeClock, *, lifetime_s: float = 3600, rotates: bool = True) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.rotates = rotates
        self.calls: Counter[str] = Counter()
        self._holds: list[asyncio.Event] = []
        self.refreshed: list[TokenResult] = []
        self.resources: list[TokenResource] = []
        """The resource each refresh was for."""
        self._failures: list[TokenServiceError] = []
        self._serial = itertools.count(1)
        self._refresh_tokens: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._device_codes: dict[str, str | None] = {}
        self._codes: dict[str, str] = {}
        self.revoked_tokens: list[str] = []
        self.directories: dict[str, str] = {}
        """An id token's `tid` by the signed-in address's domain (none when not listed)."""

    def _token(self, kind: str) -> str:
        return f"fake-{kind}-{next(self._serial)}"

    def sign_in(self, address: str) -> TokenResult:
        """What the token endpoint answers when `address` has just signed in."""
        refresh = self._token("rt")
        self._refresh_tokens[refresh] = address.casefold()
        claims = {"preferred_username": address}
        if (tid := self.directories.get(address.rpartition("@")[2].casefold())) is not None:
            claims["tid"] = tid
        return TokenResult(self._token("at"), self.lifetime_s, refresh, claims, ("SMTP.Send",))

    def revoke_user(self, address: str) -> None:
        self._revoked.add(address.casefold())

    def hold(self, count: int = 1) -> list[asyncio.Event]:
        """The next `count` refreshes wait until their event (in call order) is set."""
        events = [asyncio.Event() for _ in range(count)]
        self._holds.extend(events)
        return events

    def fail_next(self, *errors: TokenServiceError) -> None:
        self._failures.extend(errors)

    def _fail(self) -> None:
        if self._failures:
            raise self._failures.pop(0)

    async def refresh(
        self, tenant: TenantSettings, grant: StoredGrant, resource: TokenResource = TokenResource.SMTP
    ) -> TokenResult:
        self.calls["refresh"] += 1
        self.resources.append(resource)
        if self._holds:
            await self._holds.pop(0).wait()
        self._fail()
        address = self._refresh_tokens.get(grant.refresh_token or "")
        if address is None or address in self._revoked:
            raise ReauthorizationRequired(
                "the provider refused the grant (invalid_grant [50173])", "invalid_grant", (50173,)
            )
        rotated = None
        if self.rotates:
            rotated = self._token("rt")
            self._refresh_tokens[rotated] = address
        result = TokenResult(self._token("at"), self.lifetime_s, rotated, {}, grant.scopes)
        self.refreshed.append(result)
        return result

    async def issuer(self, tenant: TenantSettings, provider: Provider) -> tuple[str, str]:
        """Where the fake's grants are signed in: its one authority, unless the tenant names
        a directory or client of its own."""
        directory = tenant.identity.directory or "directory"
        return f"https://login.fake/{directory}", tenant.identity.client_id or "fake-client"

    async def app_only_token(
        self, tenant: TenantSettings, principal: Principal, resource: TokenResource | None = None
    ) -> Redeemed:
        self.calls["app_only"] += 1
        self._fail()
        result = TokenResult(self._token("app-at"), self.lifetime_s, None, {}, (".default",))
        return Redeemed(result, "https://login.fake/directory", "fake-app")

    async def start_device_flow(self, tenant: TenantSettings) -> dict[str, Any]:
        self.calls["start_device_flow"] += 1
        user_code = f"CODE{next(self._serial)}"
        self._device_codes[user_code] = None
        expires_at = self.clock() + timedelta(seconds=900)
        return {
            "user_code": user_code,
            "device_code": f"device-{user_code}",
            "verification_uri": "https://login.fake/device",
            "message": f"Enter {user_code}",
            "interval": 5,
            "expires_in": 900,
            "expires_at": expires_at.timestamp(),
        }

    def approve(self, user_code: str, address: str) -> None:
        self._device_codes[user_code] = address

    async def poll_device_flow(self, tenant: TenantSettings, flow: dict[str, Any]) -> Redeemed | None:
        self.calls["poll_device_flow"] += 1
        address = self._device_codes.get(flow["user_code"])
        if address is None:
            return None
        del self._device_codes[flow["user_code"]]
        return Redeemed(self.sign_in(address), *await self.issuer(tenant, Provider.MICROSOFT))

    async def start_authorization(
        self, tenant: TenantSettings, principal: Principal, redirect_uri: str
    ) -> AuthorizationRequest:
        state = f"state-{next(self._serial)}"
        url = f"https://login.fake/authorize?state={state}"
        return AuthorizationRequest(
            url, state, {"code_verifier": f"verifier-{state}", "redirect_uri": redirect_uri}
        )

    def authorize(self, address: str) -> str:
        """The browser's sign-in as `address`: the code the redirect carries."""
        code = self._token("code")
        self._codes[code] = address
        return code

    async def redeem_authorization(
        self, tenant: TenantSettings, provider: Provider, flow: dict[str, Any], state: str, code: str
    ) -> Redeemed:
        self.calls["redeem_authorization"] += 1
        address = self._codes.pop(code, None)
        if address is None:
            raise ReauthorizationRequired("the code was used or is unknown (invalid_grant)")
        return Redeemed(self.sign_in(address), *await self.issuer(tenant, provider))

    async def revoke(self, tenant: TenantSettings, grant: StoredGrant) -> None:
        if grant.provider is Provider.GOOGLE and grant.refresh_token is not None:
            self.revoked_tokens.append(grant.refresh_token)


class FakeTenants:
    def __init__(self, *tenants: TenantSettings) -> None:
        self._tenants = {t.tenant_id: t for t in tenants}

    def put(self, tenant: TenantSettings) -> None:
        self._tenants[tenant.tenant_id] = tenant

    async def get(self, tenant_id: str) -> TenantSettings:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(tenant_id)
        return copy.deepcopy(tenant)


class FakeEvents:
    def __init__(self) -> None:
        self.published: list[TokenEventBase] = []

    async def publish(self, event: TokenEventBase) -> None:
        # The events stream drops a message whose id it has seen (a retried publish).
        if all(e.event_id != event.event_id for e in self.published):
            self.published.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.published]  # type: ignore[attr-defined]

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.published if e.kind == kind]  # type: ignore[attr-defined]


def tenant(tenant_id: str = "t1", **fields: Any) -> TenantSettings:
    """An OAuth tenant whose administrator is admin@<tenant>.example (Microsoft by default)."""
    identity = fields.pop("identity", {})
    return TenantSettings(
        tenant_id=tenant_id,
        oauth_enabled=True,
        administrator_address=f"admin@{tenant_id}.example",
        identity=IdentitySettings(**identity),
        **fields,
    )


class TokenWorld:
    """Fakes of every port, shared by as many token-service replicas as a test builds."""

    def __init__(self, *tenants: TenantSettings, lifetime_s: float = 3600, rotates: bool = True) -> None:
        self.clock = FakeClock()
        self.grants = FakeGrantStore()
        self.acquisitions = FakeAcquisitionStore()
        self.identity = FakeIdentity(self.clock, lifetime_s=lifetime_s, rotates=rotates)
        self.tenants = FakeTenants(*(tenants or (tenant(),)))
        self.events = FakeEvents()
        self.settings = TokenSettings(
            refresh_margin_s=600,
            lease_ttl_s=30,
            lease_poll_s=0.05,
            keepalive_idle_s=14 * 24 * 3600,
            expiring_horizon_s=14 * 24 * 3600,
            device_poll_grace_s=10,
            acquisition_ttl_s=900,
        )

    def replica(self, name: str = "replica-a", **settings: Any) -> TokenService:
        return TokenService(
            self.settings.model_copy(update=settings),
            grants=self.grants,
            acquisitions=self.acquisitions,
            identity=self.identity,
            tenants=self.tenants,
            events=self.events,
            clock=self.clock,
            sleeper=self.clock.sleep,
            owner=name,
        )

    async def signed_in(
        self, principal: Principal, provider: Provider = Provider.MICROSOFT, death_in: timedelta | None = None
    ) -> TokenResult:
        """The grant a completed sign-in stores (what `SignedIn.store` writes), now."""
        result = self.identity.sign_in(principal.address)
        now = self.clock()
        issued = IssuedToken(
            result.access_token, now, now + timedelta(seconds=result.expires_in), result.refresh_token
        )
        await self.grants.replace(
            principal,
            provider,
            issued,
            result.scopes,
            AcquisitionFlow.DEVICE_CODE,
            "https://login.fake/directory",
            "fake-client",
            now + (death_in or timedelta(days=90)),
        )
        return result


class InMemoryCredentials:
    """The credential store as `Providers` reads it: each tenant's secrets, opened."""

    def __init__(self, *secrets: TenantSecrets) -> None:
        self._secrets = {s.tenant_id: s for s in secrets}

    async def get(self, tenant_id: str) -> TenantSecrets:
        return self._secrets.get(tenant_id, TenantSecrets(tenant_id))
