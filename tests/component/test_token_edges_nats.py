"""token-service's tenant reader and event publisher on nats-server alone: the same
contracts as the in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from fleetmail_contracts import streams
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.lifecycle import ServiceRuntime
from fleetmail_runtime.settings import CommonSettings
from nats.errors import TimeoutError as NatsTimeout
from token_service.adapters.events import BusEvents
from token_service.adapters.tenants import DirectoryTenants

from tests.contracts.token_edges import EventPublisherContract, TenantReaderContract


@pytest.fixture
async def runtime(nats_url: str) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime(
        "token-service-test",
        CommonSettings(nats_url=nats_url),
        uses=(streams.TENANTS_BUCKET,),
        mongo=False,
    )
    async with runtime.lifespan():
        yield runtime


class TestDirectoryTenants(TenantReaderContract):
    @pytest.fixture
    async def reader(self, runtime: ServiceRuntime) -> DirectoryTenants:
        await runtime.tenants.put(TenantSettings(tenant_id="acme"))
        return DirectoryTenants(runtime.tenants)


class TestBusEvents(EventPublisherContract):
    @pytest.fixture
    async def publisher(self, runtime: ServiceRuntime, nats_url: str):
        async def published() -> list[dict]:
            client = await nats.connect(nats_url)
            try:
                subscription = await client.jetstream().subscribe(
                    "fleetmail.events.v1.tokens.>", stream=streams.EVENTS_STREAM, ordered_consumer=True
                )
                found: list[dict] = []
                while True:
                    try:
                        message = await subscription.next_msg(timeout=0.5)
                    except NatsTimeout:
                        return found
                    found.append(json.loads(message.data))
            finally:
                await client.close()

        return BusEvents(runtime.bus), published
