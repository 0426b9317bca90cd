"""The in-memory tenant reader and event publisher pass the same contracts as the real ones."""

from __future__ import annotations

import pytest

from tests.contracts.token_edges import EventPublisherContract, TenantReaderContract
from tests.fakes.token import FakeEvents, FakeTenants, tenant


class TestFakeTenants(TenantReaderContract):
    @pytest.fixture
    async def reader(self) -> FakeTenants:
        return FakeTenants(tenant("acme"))


class TestFakeEvents(EventPublisherContract):
    @pytest.fixture
    async def publisher(self):
        events = FakeEvents()

        async def published() -> list[dict]:
            return [e.model_dump(mode="json") for e in events.published]

        return events, published
