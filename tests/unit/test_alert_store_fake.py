"""The alert store's contract on the in-memory fake the notifier's unit tests use."""

from __future__ import annotations

import pytest
from notifier.ports import AlertStore

from tests.contracts.alert_store import AlertStoreContract, Replica
from tests.fakes.notifier import AlertTable, InMemoryAlertStore


class TestInMemoryAlertStore(AlertStoreContract):
    @pytest.fixture
    def replica(self) -> Replica:
        table = AlertTable()

        async def new_replica() -> AlertStore:
            store = InMemoryAlertStore(table)
            await store.load()
            return store

        return new_replica
