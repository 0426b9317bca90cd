"""Contract suites for token-service's tenant reader and event publisher: the fakes
(`tests/unit/test_token_edges_fake.py`) and the real adapters on nats-server alone
(`tests/component/test_token_edges_nats.py`) pass the same tests.

A subclass provides `reader` (a `TenantReader` that knows tenant "acme" and no other) and
`publisher` (an `EventPublisher` and a way to read back what reached the events).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from fleetmail_contracts.tokens import Principal, PrincipalKind, Provider, TokenDeleted
from token_service.errors import ConfigurationError, UnknownTenant
from token_service.ports import EventPublisher, TenantReader

Published = Callable[[], Awaitable[list[dict]]]


class TenantReaderContract:
    @pytest.fixture
    async def reader(self) -> TenantReader:
        raise NotImplementedError

    async def test_a_known_tenant_reads_back(self, reader: TenantReader) -> None:
        assert (await reader.get("acme")).tenant_id == "acme"

    async def test_an_unknown_tenant_is_a_configuration_error_that_names_it(
        self, reader: TenantReader
    ) -> None:
        with pytest.raises(UnknownTenant) as caught:
            await reader.get("nobody")
        assert isinstance(caught.value, ConfigurationError) and caught.value.tenant_id == "nobody"
        assert "fleetmail tenants set nobody" in str(caught.value)


class EventPublisherContract:
    @pytest.fixture
    async def publisher(self) -> tuple[EventPublisher, Published]:
        raise NotImplementedError

    async def test_an_event_is_published_once_whatever_the_retries(
        self, publisher: tuple[EventPublisher, Published]
    ) -> None:
        events, published = publisher
        principal = Principal(tenant_id="acme", kind=PrincipalKind.USER, address="u@acme.example")
        event = TokenDeleted(
            event_id=uuid.uuid4().hex,
            principal=principal,
            provider=Provider.MICROSOFT,
            occurred_at=datetime(2026, 11, 28, 12, tzinfo=UTC),
            reason="requested",
        )
        await events.publish(event)
        await events.publish(event)
        mine = [e for e in await published() if e["event_id"] == event.event_id]
        assert [(e["kind"], e["reason"], e["principal"]["address"]) for e in mine] == [
            ("deleted", "requested", "u@acme.example")
        ]
