"""token-service's MongoDB stores against the MongoDB-compatible server alone: the same
contracts as the in-memory fakes, and what only the real one can show (encryption at rest)."""

from __future__ import annotations

import pytest
from fleetmail_contracts.tokens import AcquisitionFlow, Provider
from fleetmail_runtime.crypto import DecryptionError, Keyring
from token_service.adapters.acquisitions import MongoAcquisitionStore
from token_service.adapters.grants import MongoGrantStore

from tests.contracts.token_stores import (
    ADMIN,
    NOW,
    USER,
    AcquisitionStoreContract,
    GrantStoreContract,
    acquire,
)


class TestMongoGrantStore(GrantStoreContract):
    @pytest.fixture
    async def store(self, database) -> MongoGrantStore:
        client, name = database
        store = MongoGrantStore(client, name, Keyring.generate())
        await store.ensure_indexes()
        return store

    async def test_no_token_is_stored_in_clear(self, store: MongoGrantStore, database) -> None:
        client, name = database
        await acquire(store)
        document = await client[name]["grants"].find_one({})
        assert document is not None
        raw = repr(document)
        assert "refresh-1" not in raw and "access-1" not in raw
        assert document["refresh_token"]["key_id"] and document["access_token"]["key_id"]

    async def test_a_sealed_token_copied_to_another_grant_does_not_open(
        self, store: MongoGrantStore, database
    ) -> None:
        client, name = database
        await acquire(store, ADMIN)
        await acquire(store, USER, n=2)
        grants = client[name]["grants"]
        admin = await grants.find_one({"kind": "administrator"})
        assert admin is not None
        await grants.update_one({"kind": "user"}, {"$set": {"refresh_token": admin["refresh_token"]}})
        with pytest.raises(DecryptionError):
            await store.get(USER)

    async def test_a_first_release_grant_without_the_fields_is_stamped(
        self, store: MongoGrantStore, database
    ) -> None:
        client, name = database
        await acquire(store, USER)
        await client[name]["grants"].update_one({}, {"$unset": {"authority": "", "client_id": ""}})
        assert await store.stamp_issuer(USER, "https://login.example/contoso", "client-1")
        grant = await store.get(USER)
        assert grant is not None and (grant.authority, grant.client_id) == (
            "https://login.example/contoso",
            "client-1",
        )


class TestMongoAcquisitionStore(AcquisitionStoreContract):
    @pytest.fixture
    async def store(self, database) -> MongoAcquisitionStore:
        client, name = database
        store = MongoAcquisitionStore(client, name, Keyring.generate())
        await store.ensure_indexes()
        return store

    async def test_the_flow_is_not_stored_in_clear(self, store: MongoAcquisitionStore, database) -> None:
        client, name = database
        await store.create(
            "acq-1",
            ADMIN,
            Provider.MICROSOFT,
            AcquisitionFlow.DEVICE_CODE,
            NOW,
            flow={"device_code": "secret-device-code"},
            poller=("replica-a", NOW),
        )
        document = await client[name]["acquisitions"].find_one({"_id": "acq-1"})
        assert document is not None and "secret-device-code" not in repr(document)
