"""The outbox's contract on MongoDB (the MongoDB-compatible server alone)."""

from __future__ import annotations

from typing import Any

import pytest
from notifier.adapters.mongo_outbox import MongoOutbox
from notifier.ports import Outbox
from pymongo import AsyncMongoClient

from tests.contracts.outbox import OutboxContract


class TestMongoOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self, database: tuple[AsyncMongoClient[dict[str, Any]], str]) -> Outbox:
        return MongoOutbox(*database)
