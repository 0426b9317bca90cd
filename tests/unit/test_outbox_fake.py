"""The outbox's contract on the in-memory fake the notifier's unit tests use."""

from __future__ import annotations

import pytest
from notifier.ports import Outbox

from tests.contracts.outbox import OutboxContract
from tests.fakes.notifier import InMemoryOutbox


class TestInMemoryOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self) -> Outbox:
        return InMemoryOutbox()
