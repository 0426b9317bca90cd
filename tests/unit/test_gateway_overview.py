"""The fleet overview's rules, without I/O: which token state a tenant shows, what needs
attention, and how rows sort, filter and page."""

import asyncio
from datetime import UTC, date, datetime, timedelta

from fleetmail_contracts.alerts import AlertCounts, TenantAlertCounts
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    AdministratorGrantSummary,
    GrantStatus,
    GrantSummaryReply,
    Provider,
    UsersWaiting,
)
from job_gateway.domain import Administrator, Role
from job_gateway.ports import TenantCounts, TenantDigest
from job_gateway.schemas import OverviewTokenState
from job_gateway.use_cases.overview import (
    FleetOverview,
    OverviewQuery,
    OverviewSort,
    overview_rows,
    overview_token,
    paged,
    sorted_rows,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HORIZON = timedelta(days=14)


def tenant(tenant_id: str, oauth: bool = True, name: str = "") -> TenantSettings:
    return TenantSettings(
        tenant_id=tenant_id,
        display_name=name,
        oauth_enabled=oauth,
        administrator_address=f"Admin@{tenant_id}.example",
    )


def grant(
    tenant_id: str, status: GrantStatus = GrantStatus.ACTIVE, days: float | None = 80, address: str = ""
) -> AdministratorGrantSummary:
    return AdministratorGrantSummary(
        tenant_id=tenant_id,
        address=address or f"admin@{tenant_id}.example",
        status=status,
        predicted_death_at=NOW + timedelta(days=days) if days is not None else None,
    )


def test_the_token_is_the_grant_of_the_address_set_now_case_aside() -> None:
    state = overview_token(tenant("t1"), [grant("t1")], NOW, HORIZON)
    assert (state.state, state.days_left, state.expires_on) == (
        OverviewTokenState.ACQUIRED,
        80,
        date(2027, 2, 18),
    )
    earlier = grant("t1", address="old@t1.example")
    assert overview_token(tenant("t1"), [earlier], NOW, HORIZON).state is OverviewTokenState.NOT_ACQUIRED
    no_address = TenantSettings(tenant_id="t1")
    assert overview_token(no_address, [grant("t1")], NOW, HORIZON).state is OverviewTokenState.NOT_ACQUIRED


def test_a_dead_or_revoked_grant_needs_reauthorization_and_has_no_days_left() -> None:
    for status in (GrantStatus.REAUTHORIZATION_REQUIRED, GrantStatus.REVOKED):
        state = overview_token(tenant("t1"), [grant("t1", status)], NOW, HORIZON)
        assert (state.state, state.days_left) == (OverviewTokenState.REAUTHORIZATION_REQUIRED, None)


def test_expiring_is_a_predicted_death_within_the_horizon() -> None:
    at_horizon = overview_token(tenant("t1"), [grant("t1", days=14)], NOW, HORIZON)
    assert (at_horizon.state, at_horizon.days_left) == (OverviewTokenState.EXPIRING, 14)
    beyond = overview_token(tenant("t1"), [grant("t1", days=14.01)], NOW, HORIZON)
    assert beyond.state is OverviewTokenState.ACQUIRED
    passed = overview_token(tenant("t1"), [grant("t1", days=-1)], NOW, HORIZON)
    assert (passed.state, passed.days_left) == (OverviewTokenState.EXPIRING, 0)
    app_only = overview_token(tenant("t1"), [grant("t1", days=None)], NOW, HORIZON)
    assert (app_only.state, app_only.days_left) == (OverviewTokenState.ACQUIRED, None)


def rows_of(*tenants: TenantSettings, grants=(), waiting=(), alerts=(), counts=None):
    return overview_rows(
        tenants,
        GrantSummaryReply(administrators=tuple(grants), users_waiting=tuple(waiting)),
        AlertCounts(tenants=tuple(alerts)),
        counts or {},
        NOW,
        HORIZON,
    )


def test_what_needs_attention() -> None:
    rows = rows_of(
        tenant("calm"),
        tenant("off", oauth=False),
        tenant("info-only"),
        tenant("not-acquired"),
        tenant("warning"),
        tenant("user"),
        tenant("failed"),
        grants=[grant(t) for t in ("calm", "info-only", "warning", "user", "failed")],
        waiting=[UsersWaiting(tenant_id="user", count=2)],
        alerts=[
            TenantAlertCounts(tenant_id="info-only", info=3),
            TenantAlertCounts(tenant_id="warning", warning=1),
        ],
        counts={"failed": TenantCounts(failed=1, dead_lettered=1)},
    )
    assert {r.tenant_id: r.needs_attention for r in rows} == {
        "calm": False,
        "off": False,  # OAuth 2.0 off: no token to lack
        "info-only": False,
        "not-acquired": True,
        "warning": True,
        "user": True,
        "failed": True,
    }


def test_sorting_keeps_ties_a_to_z_and_rows_without_a_value_last_either_way() -> None:
    rows = rows_of(
        tenant("b"),
        tenant("a"),
        tenant("c"),
        tenant("d"),
        grants=[grant("a", days=30), grant("b", days=30), grant("c", days=5)],
        counts={"a": TenantCounts(devices=2), "b": TenantCounts(devices=2), "d": TenantCounts(devices=9)},
    )
    ids = lambda found: [r.tenant_id for r in found]  # noqa: E731
    assert ids(sorted_rows(rows, OverviewSort.DAYS_LEFT, None)) == ["c", "a", "b", "d"]
    assert ids(sorted_rows(rows, OverviewSort.DAYS_LEFT, True)) == ["a", "b", "c", "d"]
    assert ids(sorted_rows(rows, OverviewSort.DEVICES, None)) == ["d", "a", "b", "c"], (
        "most first, ties A to Z"
    )
    assert ids(sorted_rows(rows, OverviewSort.DEVICES, False)) == ["c", "a", "b", "d"]
    assert ids(sorted_rows(rows, OverviewSort.TOKEN, None)) == ["d", "c", "a", "b"], "worst first"


def test_a_page_holds_the_filtered_rows_and_the_totals_hold_them_all() -> None:
    rows = rows_of(
        *(tenant(f"t{n}", name=f"Site {n}") for n in range(5)),
        grants=[grant("t0"), grant("t1", GrantStatus.REAUTHORIZATION_REQUIRED)],
        counts={f"t{n}": TenantCounts(devices=n, unfinished={"queued": n}) for n in range(5)},
    )
    since = NOW - timedelta(hours=24)
    found = paged(rows, OverviewQuery(token_states=frozenset({OverviewTokenState.NOT_ACQUIRED})), 2, since)
    assert [r.tenant_id for r in found.rows] == ["t2", "t3"]
    assert (found.total, found.pages, found.limit) == (3, 2, 2)
    assert found.totals.tenants == 5 and found.totals.devices == 10 and found.totals.queued == 10
    assert found.totals.token_states == {
        OverviewTokenState.ACQUIRED: 1,
        OverviewTokenState.EXPIRING: 0,
        OverviewTokenState.NOT_ACQUIRED: 3,
        OverviewTokenState.REAUTHORIZATION_REQUIRED: 1,
    }
    last = paged(rows, OverviewQuery(text="SITE 4"), 2, since)
    assert [r.tenant_id for r in last.rows] == ["t4"] and last.pages == 1
    beyond = paged(rows, OverviewQuery(page=9), 2, since)
    assert beyond.rows == [] and beyond.total == 5


class CountingFleet:
    """The four questions' answers, counting how often they are asked (in-memory fakes of the
    store and the two relays: this tests the overview's keeping, not their I/O)."""

    def __init__(self, *tenant_ids: str) -> None:
        self.tenant_ids = tenant_ids
        self.asked = 0
        self.answer = asyncio.Event()
        self.answer.set()

    async def tenant_digests(self) -> list[TenantDigest]:
        self.asked += 1
        await self.answer.wait()
        return [TenantDigest(t, "", True, Provider.MICROSOFT, f"admin@{t}.example") for t in self.tenant_ids]

    async def tenant_counts(self, tenant_ids, since) -> dict[str, TenantCounts]:
        return {t: TenantCounts(devices=1) for t in self.tenant_ids}

    async def fleet_summary(self, tenant_ids) -> GrantSummaryReply:
        return GrantSummaryReply(administrators=[grant(t) for t in self.tenant_ids], users_waiting=[])

    async def counts(self, tenant_ids) -> AlertCounts:
        return AlertCounts(tenants=[])


async def test_the_fleets_figures_are_asked_once_per_max_age_whoever_looks() -> None:
    fleet = CountingFleet("t1", "t2", "t3")
    clock = [NOW]
    overview = FleetOverview(
        fleet,
        fleet,
        fleet,
        HORIZON,
        50,
        clock=lambda: clock[0],
        max_age=timedelta(seconds=5),  # type: ignore[arg-type]
    )
    owner = Administrator("owner", Role.OWNER, None)
    mine = Administrator("k1", Role.FLEET_ADMIN, ("t2",))
    fleet.answer.clear()
    # Pages that come while the figures are being asked wait for that one asking.
    pages = asyncio.gather(*(overview.page(owner, OverviewQuery()) for _ in range(5)))
    await asyncio.sleep(0)
    fleet.answer.set()
    assert all(p.total == 3 for p in await pages)
    # A fleet administrator gets its own tenants out of the same figures.
    assert [r.tenant_id for r in (await overview.page(mine, OverviewQuery())).rows] == ["t2"]
    clock[0] += timedelta(seconds=4.9)
    await overview.page(owner, OverviewQuery())
    assert fleet.asked == 1
    clock[0] += timedelta(seconds=0.2)
    await overview.page(owner, OverviewQuery())
    assert fleet.asked == 2


async def test_with_no_max_age_every_page_asks() -> None:
    fleet = CountingFleet("t1")
    overview = FleetOverview(fleet, fleet, fleet, HORIZON, clock=lambda: NOW)  # type: ignore[arg-type]
    owner = Administrator("owner", Role.OWNER, None)
    for _ in range(3):
        await overview.page(owner, OverviewQuery())
    assert fleet.asked == 3
