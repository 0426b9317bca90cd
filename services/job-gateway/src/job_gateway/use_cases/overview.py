"""The fleet overview: every tenant a key sees, with its administrator token, alerts, users to
sign in, failed jobs, devices and queue — one row each, sorted, filtered, paged, and the
fleet's totals. The API's `GET /v1/admin/overview`, `fleetmail status` and the console's
landing page all call `FleetOverview.page`.

However many tenants there are, a page costs the same few round trips: one request to
token-service (`GrantSummaryRequest`), one to the notifier (`CountAlerts`) and one query per
figure in job-gateway's own database (`ports.OverviewStore`), side by side. The rules that
turn those answers into rows are the pure functions below.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from fleetmail_contracts.alerts import AlertCounts
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AdministratorGrantSummary, GrantStatus, GrantSummaryReply

from ..domain import Administrator, visible_tenants
from ..errors import InvalidRequest
from ..ports import OverviewStore, TenantCounts, TenantDigest
from ..schemas import (
    AlertCount,
    OverviewPage,
    OverviewRow,
    OverviewToken,
    OverviewTokenState,
    OverviewTotals,
)
from .relays import AlertRelay, TokenRelay

WINDOW = timedelta(hours=24)
"""The job figures count the last 24 hours."""


class OverviewSort(StrEnum):
    TENANT = "tenant"
    TOKEN = "token"
    DAYS_LEFT = "days_left"
    ALERTS = "alerts"
    USERS_WAITING = "users_waiting"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    DEVICES = "devices"
    QUEUED = "queued"


TOKEN_RANK = {
    OverviewTokenState.REAUTHORIZATION_REQUIRED: 0,
    OverviewTokenState.NOT_ACQUIRED: 1,
    OverviewTokenState.EXPIRING: 2,
    OverviewTokenState.ACQUIRED: 3,
}
"""The token states from the one that stops a fleet first."""

ASCENDING_BY_DEFAULT = frozenset({OverviewSort.TENANT, OverviewSort.TOKEN, OverviewSort.DAYS_LEFT})
"""Without an order: tenants A to Z, the worst token and the fewest days left first, and the
largest figures first."""


@dataclass(frozen=True)
class OverviewQuery:
    """What a caller asks of the overview: the API's query parameters, the console's alike."""

    sort: OverviewSort = OverviewSort.TENANT
    descending: bool | None = None
    """None: the sort's natural order (`ASCENDING_BY_DEFAULT`)."""
    token_states: frozenset[OverviewTokenState] = frozenset()
    """Only tenants whose token is in one of these (none: any)."""
    text: str | None = None
    """Only tenants whose id or name holds this, case aside."""
    needs_attention: bool | None = None
    page: int = 1
    limit: int | None = None
    """None: the gateway's page size (FLEETMAIL_GATEWAY_OVERVIEW_PAGE_SIZE)."""


MAX_PAGE = 100_000
MAX_TEXT = 100


def overview_query(
    sort: str | None = None,
    order: str | None = None,
    token_states: Iterable[str] = (),
    text: str | None = None,
    needs_attention: bool | None = None,
    page: int = 1,
    limit: int | None = None,
) -> OverviewQuery:
    """The query the API's parameters and the console's query string describe, by one set of
    rules; `InvalidRequest` names a value that is not one."""
    try:
        chosen = OverviewSort(sort or OverviewSort.TENANT)
        states = frozenset(OverviewTokenState(s) for s in token_states if s)
    except ValueError as exc:
        raise InvalidRequest(f"the overview cannot be shown that way: {exc}") from exc
    if order not in (None, "asc", "desc"):
        raise InvalidRequest(f"order: {order!r} is not asc or desc")
    if not 1 <= page <= MAX_PAGE:
        raise InvalidRequest(f"page: from 1 to {MAX_PAGE}")
    if limit is not None and not 1 <= limit <= 1000:
        raise InvalidRequest("limit: from 1 to 1000")
    text = (text or "").strip() or None
    if text is not None and len(text) > MAX_TEXT:
        raise InvalidRequest(f"q: at most {MAX_TEXT} characters")
    return OverviewQuery(
        sort=chosen,
        descending=None if order is None else order == "desc",
        token_states=states,
        text=text,
        needs_attention=needs_attention,
        page=page,
        limit=limit,
    )


@dataclass(frozen=True, slots=True)
class TokenFigure:
    state: OverviewTokenState
    expires_on: date | None = None
    days_left: int | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A tenant's row while the overview sorts and counts (plain values: a thousand of them
    cost little); the page's rows become `OverviewRow`s."""

    tenant: TenantDigest
    token: TokenFigure
    alerts: tuple[int, int, int]
    """Critical, warning, info."""
    users_waiting: int
    counts: TenantCounts
    needs_attention: bool

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def queued(self) -> int:
        return sum(self.counts.unfinished.values())

    def shown(self) -> OverviewRow:
        critical, warning, info = self.alerts
        return OverviewRow(
            tenant_id=self.tenant.tenant_id,
            display_name=self.tenant.display_name,
            oauth_enabled=self.tenant.oauth_enabled,
            provider=self.tenant.provider,
            administrator_address=self.tenant.administrator_address,
            token=OverviewToken(
                state=self.token.state, expires_on=self.token.expires_on, days_left=self.token.days_left
            ),
            alerts=AlertCount(critical=critical, warning=warning, info=info),
            users_waiting=self.users_waiting,
            failed_24h=self.counts.failed,
            dead_lettered_24h=self.counts.dead_lettered,
            devices=self.counts.devices,
            queued=self.queued,
            queued_by_status=dict(self.counts.unfinished),
            needs_attention=self.needs_attention,
        )


def overview_token(
    tenant: TenantDigest | TenantSettings,
    grants: Iterable[AdministratorGrantSummary],
    now: datetime,
    horizon: timedelta,
) -> TokenFigure:
    """The administrator token of the address the tenant has now (as `domain.token_status`
    finds it): a grant of an earlier address does not count."""
    address = (tenant.administrator_address or "").casefold()
    grant = next((g for g in grants if address and g.address.casefold() == address), None)
    if grant is None:
        return TokenFigure(OverviewTokenState.NOT_ACQUIRED)
    if grant.status is not GrantStatus.ACTIVE:
        return TokenFigure(OverviewTokenState.REAUTHORIZATION_REQUIRED)
    death = grant.predicted_death_at
    if death is None:  # app-only: no refresh token to die
        return TokenFigure(OverviewTokenState.ACQUIRED)
    left = death - now
    return TokenFigure(
        OverviewTokenState.EXPIRING if left <= horizon else OverviewTokenState.ACQUIRED,
        death.astimezone(UTC).date(),
        max(0, left // timedelta(days=1)),
    )


def needs_attention(
    oauth_enabled: bool, token: TokenFigure, alerts: tuple[int, int, int], users_waiting: int, failed: int
) -> bool:
    """Something an administrator must act on: OAuth 2.0 on without a good token, a critical or
    warning alert, a user to sign in, a job that failed in the window."""
    token_trouble = oauth_enabled and token.state is not OverviewTokenState.ACQUIRED
    critical, warning, _ = alerts
    return bool(token_trouble or critical or warning or users_waiting or failed)


def overview_rows(
    tenants: Sequence[TenantDigest],
    grants: GrantSummaryReply,
    alerts: AlertCounts,
    counts: Mapping[str, TenantCounts],
    now: datetime,
    horizon: timedelta,
) -> list[Row]:
    """One row per tenant, from the three answers."""
    administrators: dict[str, list[AdministratorGrantSummary]] = {}
    for grant in grants.administrators:
        administrators.setdefault(grant.tenant_id, []).append(grant)
    waiting = {w.tenant_id: w.count for w in grants.users_waiting}
    alerted = {a.tenant_id: (a.critical, a.warning, a.info) for a in alerts.tenants}
    rows = []
    for tenant in tenants:
        figures = counts.get(tenant.tenant_id, NO_COUNTS)
        token = overview_token(tenant, administrators.get(tenant.tenant_id, ()), now, horizon)
        alert = alerted.get(tenant.tenant_id, (0, 0, 0))
        users = waiting.get(tenant.tenant_id, 0)
        attention = needs_attention(tenant.oauth_enabled, token, alert, users, figures.failed)
        rows.append(Row(tenant, token, alert, users, figures, attention))
    return rows


NO_COUNTS = TenantCounts()

SORT_KEYS: dict[OverviewSort, Callable[[Row], Any]] = {
    OverviewSort.TENANT: lambda r: r.tenant_id,
    OverviewSort.TOKEN: lambda r: TOKEN_RANK[r.token.state],
    OverviewSort.DAYS_LEFT: lambda r: r.token.days_left,
    OverviewSort.ALERTS: lambda r: r.alerts,
    OverviewSort.USERS_WAITING: lambda r: r.users_waiting,
    OverviewSort.FAILED: lambda r: r.counts.failed,
    OverviewSort.DEAD_LETTERED: lambda r: r.counts.dead_lettered,
    OverviewSort.DEVICES: lambda r: r.counts.devices,
    OverviewSort.QUEUED: lambda r: r.queued,
}


def matches(row: Row, query: OverviewQuery) -> bool:
    if query.token_states and row.token.state not in query.token_states:
        return False
    if query.needs_attention is not None and row.needs_attention != query.needs_attention:
        return False
    if query.text:
        wanted = query.text.casefold()
        return wanted in row.tenant_id.casefold() or wanted in row.tenant.display_name.casefold()
    return True


def sorted_rows(rows: Iterable[Row], sort: OverviewSort, descending: bool | None) -> list[Row]:
    """Sorted by the key, ties by tenant id (A to Z either way); a row without the value
    (no predicted death) comes last either way."""
    key = SORT_KEYS[sort]
    reverse = descending if descending is not None else sort not in ASCENDING_BY_DEFAULT
    by_id = sorted(rows, key=lambda r: r.tenant_id)
    valued = [r for r in by_id if key(r) is not None]
    # `sorted(reverse=True)` keeps equal rows in their order: the tie-break stays A to Z.
    return sorted(valued, key=key, reverse=reverse) + [r for r in by_id if key(r) is None]


def totals_of(rows: Sequence[Row]) -> OverviewTotals:
    return OverviewTotals(
        tenants=len(rows),
        needs_attention=sum(r.needs_attention for r in rows),
        token_states={state: sum(r.token.state is state for r in rows) for state in OverviewTokenState},
        alerts=AlertCount(
            critical=sum(r.alerts[0] for r in rows),
            warning=sum(r.alerts[1] for r in rows),
            info=sum(r.alerts[2] for r in rows),
        ),
        users_waiting=sum(r.users_waiting for r in rows),
        failed_24h=sum(r.counts.failed for r in rows),
        dead_lettered_24h=sum(r.counts.dead_lettered for r in rows),
        devices=sum(r.counts.devices for r in rows),
        queued=sum(r.queued for r in rows),
    )


def paged(rows: Sequence[Row], query: OverviewQuery, limit: int, since: datetime) -> OverviewPage:
    """The query's page of the rows (`limit` a page), the filter's total and the totals of
    every row."""
    chosen = sorted_rows((r for r in rows if matches(r, query)), query.sort, query.descending)
    start = (query.page - 1) * limit
    return OverviewPage(
        rows=[r.shown() for r in chosen[start : start + limit]],
        total=len(chosen),
        page=query.page,
        pages=max(1, math.ceil(len(chosen) / limit)),
        limit=limit,
        since=since,
        totals=totals_of(rows),
    )


@dataclass(frozen=True)
class FleetFigures:
    """Every tenant's figures as the four questions answered them, at `taken`."""

    taken: datetime
    digests: Sequence[TenantDigest]
    grants: GrantSummaryReply
    alerts: AlertCounts
    counts: Mapping[str, TenantCounts]


class FleetOverview:
    """`page` answers from the fleet's figures, asked again once they are older than
    `max_age` (one asking at a time, whoever waits for it): however many administrators look,
    the four questions go out at most once per `max_age`. 0: asked on every page."""

    def __init__(
        self,
        store: OverviewStore,
        tokens: TokenRelay,
        alerts: AlertRelay,
        expiring_within: timedelta,
        page_size: int = 50,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_age: timedelta = timedelta(0),
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.alerts = alerts
        self.expiring_within = expiring_within
        self.page_size = page_size
        self.clock = clock
        self.max_age = max_age
        self._figures: FleetFigures | None = None
        self._asking: asyncio.Lock = asyncio.Lock()

    async def figures(self) -> FleetFigures:
        """The fleet's figures, no older than `max_age`."""
        if (known := self._fresh()) is not None:
            return known
        async with self._asking:
            if (known := self._fresh()) is not None:  # asked meanwhile by another page
                return known
            taken = self.clock()
            # Every tenant's (the page chooses the key's): all four questions go out at once.
            digests, grants, alerts, counts = await asyncio.gather(
                self.store.tenant_digests(),
                self.tokens.fleet_summary(None),
                self.alerts.counts(None),
                self.store.tenant_counts(None, taken - WINDOW),
            )
            figures = FleetFigures(taken, digests, grants, alerts, counts)
            if self.max_age > timedelta(0):
                self._figures = figures
            return figures

    def _fresh(self) -> FleetFigures | None:
        known = self._figures
        if known is not None and self.clock() - known.taken < self.max_age:
            return known
        return None

    async def page(self, admin: Administrator, query: OverviewQuery) -> OverviewPage:
        """The tenants this key sees (all for the owner and an operator given none, its own
        for any other), as the query asks."""
        figures = await self.figures()
        tenants = visible_tenants(admin, figures.digests)
        rows = overview_rows(
            tenants, figures.grants, figures.alerts, figures.counts, figures.taken, self.expiring_within
        )
        return paged(rows, query, query.limit or self.page_size, figures.taken - WINDOW)
