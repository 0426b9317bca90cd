"""The alert store's contract on MongoDB (the MongoDB-compatible server alone), and what
only the MongoDB adapter has: alerts written before event times were kept."""

from __future__ import annotations

from typing import Any

import pytest
from fleetmail_contracts.alerts import AlertState
from notifier.adapters.mongo_alerts import MongoAlertStore
from notifier.domain import administrator_key
from notifier.ports import AlertStore
from pymongo import AsyncMongoClient

from tests.contracts.alert_store import AlertStoreContract, Replica, acquired, at, dead_grant


class TestMongoAlertStore(AlertStoreContract):
    @pytest.fixture
    def replica(self, database: tuple[AsyncMongoClient[dict[str, Any]], str]) -> Replica:
        client, name = database

        async def new_replica() -> AlertStore:
            store = MongoAlertStore(client, name)
            await store.load()
            return store

        return new_replica

    async def test_an_alert_written_before_event_times_were_kept_still_changes(
        self, replica: Replica, database: tuple[AsyncMongoClient[dict[str, Any]], str]
    ) -> None:
        client, name = database
        alerts = client[name]["alerts"]
        store = await replica()
        assert await store.raise_(dead_grant("t3", 50), at(50)) is not None
        await alerts.update_one({"_id": administrator_key("t3")}, {"$unset": {"changed_at": ""}})
        store = await replica()  # as after an upgrade
        assert await store.resolve(acquired("t3", 1), at(51)) is not None
        document = await alerts.find_one({"_id": administrator_key("t3")})
        assert document is not None and document["state"] == AlertState.RESOLVED.value
        await alerts.update_one({"_id": administrator_key("t3")}, {"$unset": {"changed_at": ""}})
        assert await (await replica()).raise_(dead_grant("t3", 2), at(52)) is not None
