"""The store contract on the in-memory fake that job-gateway's unit tests use."""

import pytest
from job_gateway.ports import GatewayStore

from tests.contracts.gateway_store import GatewayStoreContract
from tests.fakes.gateway import InMemoryGatewayStore


class TestInMemoryGatewayStore(GatewayStoreContract):
    @pytest.fixture
    def store(self) -> GatewayStore:
        return InMemoryGatewayStore()
