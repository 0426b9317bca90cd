"""What every notifier alert store must do (`notifier.ports.AlertStore`), whatever keeps it.

Subclasses provide the fixture `replica`: an async factory that returns a new replica's
store over one shared database, already loaded (as a notifier replica at start-up). Run on
the in-memory fake (`tests/unit/test_alert_store_fake.py`) and on MongoDB
(`tests/component/test_alert_store_mongo.py`).

Events reach the notifier late and out of order (two consumers, redeliveries): an alert is
changed only by an event newer than the one that last changed it, on the replica that
changed it and on one that starts with an empty memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fleetmail_contracts.alerts import AlertCause, AlertSeverity, AlertState, AlertView
from notifier.domain import Condition, Raise, Resolve, administrator_key, user_key
from notifier.ports import AlertStore

Replica = Callable[[], Awaitable[AlertStore]]

T = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def dead_grant(tenant_id: str, seconds: float) -> Raise:
    return Raise(
        administrator_key(tenant_id),
        tenant_id,
        AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED,
        AlertSeverity.CRITICAL,
        "The administrator's refresh token needs re-authorization",
        "a job failed on the dead grant",
        observed_at=at(seconds),
    )


def acquired(tenant_id: str, seconds: float) -> Resolve:
    return Resolve(administrator_key(tenant_id), "acquired again", observed_at=at(seconds))


def user_parked(tenant_id: str, user: str, device_id: str) -> Raise:
    return Raise(
        user_key(tenant_id, user),
        tenant_id,
        AlertCause.USER_REAUTHORIZATION_REQUIRED,
        AlertSeverity.WARNING,
        f"{user} must sign in to send",
        "a job waits",
        principal_address=user,
        device_id=device_id,
        for_administrators=False,
    )


def unreachable(key: str, since: datetime) -> Condition:
    return Condition(key, since, "t1", "administrator", "admin@t1.example", "microsoft", "HTTP 503")


async def everything(store: AlertStore, tenant_id: str) -> list[AlertView]:
    return await store.list_alerts(tenant_id, None, include_resolved=True)


async def state_of(store: AlertStore, tenant_id: str) -> AlertState:
    [alert] = await everything(store, tenant_id)
    return alert.state


class AlertStoreContract:
    @pytest.fixture
    def replica(self) -> Replica:
        raise NotImplementedError("a subclass provides the store under test")

    async def test_counts_are_the_unresolved_alerts_for_administrators_by_tenant_and_severity(
        self, replica: Replica
    ) -> None:
        store = await replica()
        await store.raise_(dead_grant("t1", 0), at(0))
        await store.raise_(user_parked("t1", "u@t1.example", "d1"), at(0))  # the device's, not theirs
        acknowledged = await store.raise_(dead_grant("t2", 0), at(0))
        assert acknowledged is not None
        await store.acknowledge("t2", acknowledged.alert_id, "key-1")
        await store.raise_(dead_grant("t3", 0), at(0))
        await store.resolve(acquired("t3", 1), at(1))
        counts = await store.counts_for_administrators(None)
        assert [(c.tenant_id, c.critical, c.warning, c.info) for c in counts.tenants] == [
            ("t1", 1, 0, 0),
            ("t2", 1, 0, 0),
        ]
        assert [c.tenant_id for c in (await store.counts_for_administrators(["t2", "t3"])).tenants] == ["t2"]

    async def test_an_alert_raised_twice_is_one_alert_raised_once(self, replica: Replica) -> None:
        store = await replica()
        first = await store.raise_(dead_grant("t1", 0), at(0))
        assert first is not None and first.state is AlertState.OPEN
        assert first.cause is AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED
        assert await store.raise_(dead_grant("t1", 1), at(1)) is None
        assert [a.alert_id for a in await everything(store, "t1")] == [first.alert_id]

    async def test_a_replica_that_missed_the_raise_does_not_raise_it_again(self, replica: Replica) -> None:
        store, other = await replica(), await replica()
        raised = await store.raise_(dead_grant("t1", 0), at(0))
        assert raised is not None
        assert await other.raise_(dead_grant("t1", 1), at(1)) is None
        [alert] = await everything(other, "t1")
        assert alert.alert_id == raised.alert_id and alert.occurrences == 2

    async def test_resolving_returns_the_alert_once(self, replica: Replica) -> None:
        store = await replica()
        assert await store.resolve(acquired("t1", 0), at(0)) is None  # nothing open
        raised = await store.raise_(dead_grant("t1", 1), at(1))
        resolved = await store.resolve(acquired("t1", 2), at(2))
        assert raised is not None and resolved is not None
        assert resolved.alert_id == raised.alert_id and resolved.state is AlertState.RESOLVED
        assert resolved.resolved_at is not None
        assert await store.resolve(acquired("t1", 3), at(3)) is None

    async def test_a_resolved_alert_raised_again_reopens_with_a_new_id(self, replica: Replica) -> None:
        store = await replica()
        first = await store.raise_(dead_grant("t1", 0), at(0))
        await store.resolve(acquired("t1", 1), at(1))
        again = await store.raise_(dead_grant("t1", 2), at(2))
        assert first is not None and again is not None and again.alert_id != first.alert_id
        assert again.state is AlertState.OPEN and again.resolved_at is None
        assert len(await everything(store, "t1")) == 1  # one alert per key, reopened

    async def test_a_failure_read_after_the_grant_came_back_does_not_reopen_the_alert(
        self, replica: Replica
    ) -> None:
        store = await replica()
        first = await store.raise_(dead_grant("t1", 0), at(0))
        assert first is not None
        assert await store.resolve(acquired("t1", 10), at(11)) is not None
        # Jobs that failed before the acquisition, read after it (late, or redelivered).
        for seconds in (2, 5, 9.999, 10):
            assert await store.raise_(dead_grant("t1", seconds), at(12)) is None
        assert await state_of(store, "t1") is AlertState.RESOLVED

        # A replica with an empty memory decides the same, from the database.
        other = await replica()
        assert await other.raise_(dead_grant("t1", 8), at(13)) is None
        assert await state_of(other, "t1") is AlertState.RESOLVED

        # The grant dies again after the acquisition: a new alert.
        again = await other.raise_(dead_grant("t1", 20), at(20))
        assert again is not None and again.alert_id != first.alert_id
        assert await state_of(other, "t1") is AlertState.OPEN

    async def test_a_success_read_after_a_newer_failure_does_not_resolve_it(self, replica: Replica) -> None:
        store = await replica()
        assert await store.raise_(dead_grant("t2", 30), at(30)) is not None
        assert await store.resolve(acquired("t2", 25), at(31)) is None  # happened before the failure
        assert await state_of(store, "t2") is AlertState.OPEN
        other = await replica()
        assert await other.resolve(acquired("t2", 29), at(32)) is None  # nor on a fresh replica
        assert await state_of(store, "t2") is AlertState.OPEN
        assert await store.resolve(acquired("t2", 40), at(41)) is not None  # still known open
        assert await state_of(store, "t2") is AlertState.RESOLVED

    async def test_an_event_without_a_time_counts_as_now(self, replica: Replica) -> None:
        store = await replica()
        timeless = replace(dead_grant("t1", 0), observed_at=None)
        assert await store.raise_(timeless, at(5)) is not None
        assert await store.resolve(acquired("t1", 4), at(6)) is None  # older than "now" at raise
        assert await store.resolve(acquired("t1", 5), at(6)) is not None

    async def test_a_replica_learns_what_others_raised_when_it_loads(self, replica: Replica) -> None:
        stale, other = await replica(), await replica()
        assert await other.raise_(dead_grant("t1", 0), at(0)) is not None
        assert await stale.resolve(acquired("t1", 1), at(1)) is None  # it does not know yet
        await stale.load()
        resolved = await stale.resolve(acquired("t1", 1), at(1))
        assert resolved is not None and await state_of(other, "t1") is AlertState.RESOLVED

    async def test_a_replica_that_resolved_an_alert_another_raised_again_raises_nothing(
        self, replica: Replica
    ) -> None:
        store, other = await replica(), await replica()
        await store.raise_(dead_grant("t1", 0), at(0))
        await store.resolve(acquired("t1", 1), at(1))
        await other.load()
        assert await other.raise_(dead_grant("t1", 2), at(2)) is not None
        # `store` still remembers the key as resolved by itself; the database says open.
        assert await store.raise_(dead_grant("t1", 3), at(3)) is None
        assert len(await store.list_alerts("t1", None, include_resolved=False)) == 1

    async def test_a_device_feed_shows_the_tenant_wide_alerts_and_its_own_users(
        self, replica: Replica
    ) -> None:
        store = await replica()
        await store.raise_(dead_grant("t1", 0), at(0))
        await store.raise_(user_parked("t1", "u1@t1.example", "floor1"), at(1))
        await store.raise_(user_parked("t1", "u2@t1.example", "floor2"), at(2))
        await store.raise_(dead_grant("t9", 0), at(3))
        floor1 = await store.list_alerts("t1", "floor1", include_resolved=False)
        assert [(a.device_id, a.principal_address) for a in floor1] == [
            ("floor1", "u1@t1.example"),
            (None, None),
        ]  # newest first, the other floor's user and the other tenant left out
        assert len(await store.list_alerts("t1", None, include_resolved=False)) == 3

    async def test_resolved_alerts_are_listed_only_when_asked_for(self, replica: Replica) -> None:
        store = await replica()
        await store.raise_(dead_grant("t1", 0), at(0))
        await store.resolve(acquired("t1", 1), at(1))
        assert await store.list_alerts("t1", None, include_resolved=False) == []
        [alert] = await store.list_alerts("t1", None, include_resolved=True)
        assert alert.state is AlertState.RESOLVED

    async def test_an_acknowledged_alert_stays_live_until_resolved(self, replica: Replica) -> None:
        store = await replica()
        raised = await store.raise_(dead_grant("t1", 0), at(0))
        assert raised is not None
        assert await store.acknowledge("t9", raised.alert_id, "eve") is None  # another tenant's
        acknowledged = await store.acknowledge("t1", raised.alert_id, "admin")
        assert acknowledged is not None and acknowledged.state is AlertState.ACKNOWLEDGED
        assert await store.acknowledge("t1", raised.alert_id, "admin") is None  # only open ones
        assert [s.state for s in await store.live_summary() if s.tenant_id == "t1"] == ["acknowledged"]
        assert await store.resolve(acquired("t1", 1), at(1)) is not None
        assert [s for s in await store.live_summary() if s.tenant_id == "t1"] == []

    async def test_the_live_summary_counts_each_live_alert_by_cause_and_severity(
        self, replica: Replica
    ) -> None:
        store = await replica()
        await store.raise_(dead_grant("t5", 0), at(0))
        await store.raise_(user_parked("t5", "u@t5.example", "d"), at(1))
        await store.raise_(dead_grant("t6", 0), at(0))
        await store.resolve(acquired("t6", 1), at(1))
        summary = sorted(
            (s.cause, s.severity, s.state) for s in await store.live_summary() if s.tenant_id in ("t5", "t6")
        )
        assert summary == [
            ("administrator_reauthorization_required", "critical", "open"),
            ("user_reauthorization_required", "warning", "open"),
        ]

    async def test_a_channel_problem_is_named_once_on_its_alert(self, replica: Replica) -> None:
        store = await replica()
        raised = await store.raise_(dead_grant("t1", 0), at(0))
        assert raised is not None
        for _ in range(2):
            await store.note_channel_problem(raised.alert_id, "https://hook.example: gave up (HTTP 500)")
        [alert] = await everything(store, "t1")
        assert alert.channel_problems == ("https://hook.example: gave up (HTTP 500)",)

    async def test_a_condition_keeps_its_first_start_until_it_ends(self, replica: Replica) -> None:
        store = await replica()
        key = "t1|administrator:admin@t1.example|provider_unreachable"
        assert not await store.condition_exists(key)
        await store.start_condition(unreachable(key, at(0)))
        await store.start_condition(unreachable(key, at(50)))  # a later failure: same condition
        assert await store.condition_exists(key)
        assert await store.lasting_conditions(at(-1)) == []
        [lasting] = await store.lasting_conditions(at(0))
        assert lasting == unreachable(key, at(0))
        await store.end_condition(key)
        assert not await store.condition_exists(key)
        assert await store.lasting_conditions(at(100)) == []
        await store.end_condition(key)  # ending none is harmless

    async def test_another_replica_ends_a_condition_once_it_has_loaded(self, replica: Replica) -> None:
        store = await replica()
        key = "t1|user:u@t1.example|provider_unreachable"
        await store.start_condition(unreachable(key, at(0)))
        other = await replica()
        await other.end_condition(key)
        assert not await store.condition_exists(key)
