"""The outbox's contract on MongoDB (the MongoDB-compatible server alone)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from notifier.adapters.mongo_outbox import MongoOutbox
from notifier.ports import Outbox
from pymongo import AsyncMongoClient

from tests.contracts.outbox import OutboxContract


class TestMongoOutbox(OutboxContract):
    @pytest.fixture
    async def outbox(self, mongodb_uri: str) -> AsyncIterator[Outbox]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
        name = f"outbox_{uuid.uuid4().hex[:8]}"
        try:
            yield MongoOutbox(client, name)
        finally:
            await client.drop_database(name)
            await client.close()
