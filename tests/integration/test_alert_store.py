"""The notifier's alert store on the real MongoDB-compatible server: events read late change
nothing (an alert is changed only by an event newer than the one that last changed it), on
the replica that resolved the alert and on one that starts with an empty memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fleetmail_contracts.alerts import AlertCause, AlertSeverity, AlertState
from notifier.alerts import AlertStore
from notifier.domain import Raise, Resolve, administrator_key
from pymongo import AsyncMongoClient

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


@pytest.fixture
async def mongo(stack) -> AsyncIterator[tuple[AsyncMongoClient, str]]:
    client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    database = f"alert_store_{uuid.uuid4().hex[:8]}"
    try:
        yield client, database
    finally:
        await client.drop_database(database)
        await client.close()


async def started(client: AsyncMongoClient, database: str) -> AlertStore:
    """A notifier replica's store, as at start-up (what is open, read from the database)."""
    store = AlertStore(client, database)
    await store.load()
    return store


async def state(client: AsyncMongoClient, database: str, tenant_id: str) -> str:
    document = await client[database]["alerts"].find_one({"_id": administrator_key(tenant_id)})
    return document["state"]


async def test_a_failure_read_after_the_grant_came_back_does_not_reopen_the_alert(mongo) -> None:
    client, database = mongo
    store = await started(client, database)
    first = await store.raise_(dead_grant("t1", 0), at(0))
    assert first is not None
    assert await store.resolve(acquired("t1", 10), at(11)) is not None
    # Jobs that failed before the acquisition, read after it (late, or redelivered).
    for seconds in (2, 5, 9.999, 10):
        assert await store.raise_(dead_grant("t1", seconds), at(12)) is None
    assert await state(client, database, "t1") == AlertState.RESOLVED.value

    # A replica with an empty memory decides the same, from the database.
    other = await started(client, database)
    assert await other.raise_(dead_grant("t1", 8), at(13)) is None
    assert await state(client, database, "t1") == AlertState.RESOLVED.value

    # The grant dies again after the acquisition: a new alert.
    again = await other.raise_(dead_grant("t1", 20), at(20))
    assert again is not None and again.alert_id != first.alert_id
    assert await state(client, database, "t1") == AlertState.OPEN.value


async def test_a_success_read_after_a_newer_failure_does_not_resolve_it(mongo) -> None:
    client, database = mongo
    store = await started(client, database)
    assert await store.raise_(dead_grant("t2", 30), at(30)) is not None
    assert await store.resolve(acquired("t2", 25), at(31)) is None  # happened before the failure
    assert await state(client, database, "t2") == AlertState.OPEN.value
    assert await store.resolve(acquired("t2", 40), at(41)) is not None  # still known open
    assert await state(client, database, "t2") == AlertState.RESOLVED.value


async def test_an_alert_written_before_event_times_were_kept_still_changes(mongo) -> None:
    client, database = mongo
    store = await started(client, database)
    assert await store.raise_(dead_grant("t3", 50), at(50)) is not None
    alerts = client[database]["alerts"]
    await alerts.update_one({"_id": administrator_key("t3")}, {"$unset": {"changed_at": ""}})
    store = await started(client, database)  # as after an upgrade
    assert await store.resolve(acquired("t3", 1), at(51)) is not None
    assert await state(client, database, "t3") == AlertState.RESOLVED.value
    await alerts.update_one({"_id": administrator_key("t3")}, {"$unset": {"changed_at": ""}})
    assert await (await started(client, database)).raise_(dead_grant("t3", 2), at(52)) is not None
