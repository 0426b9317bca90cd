"""The in-memory grant and acquisition stores pass the same contracts as the MongoDB ones."""

from __future__ import annotations

import pytest

from tests.contracts.token_stores import AcquisitionStoreContract, GrantStoreContract
from tests.fakes.token import FakeAcquisitionStore, FakeGrantStore


class TestFakeGrantStore(GrantStoreContract):
    @pytest.fixture
    async def store(self) -> FakeGrantStore:
        return FakeGrantStore()


class TestFakeAcquisitionStore(AcquisitionStoreContract):
    @pytest.fixture
    async def store(self) -> FakeAcquisitionStore:
        return FakeAcquisitionStore()
