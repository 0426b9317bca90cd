"""The store contract on job-gateway's MongoDB adapter, and API keys stored before they had
their own hash key, read and moved to it on the real adapter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from job_gateway.adapters.mongo import MongoStore
from job_gateway.credentials import HashKey, Keys, keyed_hash, new_api_key
from job_gateway.domain import Role
from job_gateway.ports import GatewayStore
from job_gateway.use_cases import Administrators
from pymongo import AsyncMongoClient

from tests.contracts.gateway_store import GatewayStoreContract


@pytest.fixture(scope="module")
async def client(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    yield mongo
    await mongo.close()


async def fresh_store(client: AsyncMongoClient[dict[str, Any]]) -> MongoStore:
    store = MongoStore(client, f"gateway_{uuid.uuid4().hex[:10]}")
    await store.ensure_indexes()
    return store


class TestMongoStore(GatewayStoreContract):
    @pytest.fixture
    async def store(self, client: AsyncMongoClient[dict[str, Any]]) -> GatewayStore:
        return await fresh_store(client)


async def test_an_api_key_stored_before_the_api_key_hash_key_still_works_and_moves_to_it(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    store = await fresh_store(client)
    keys = Keys(owner_api_key="owner", device_secret=b"device-secret-key", api_key_hash=b"api-key-hash-key")
    key_id, secret, key = new_api_key()
    # The record exactly as job-gateway wrote it before: hashed under the device secret key,
    # no hash_key field.
    await store.api_keys.insert_one(
        {
            "_id": key_id,
            "name": "NOC",
            "role": "operator",
            "tenant_ids": None,
            "secret_hash": keyed_hash(keys.device_secret, secret),
            "created_at": datetime.now(UTC),
        }
    )
    legacy = await store.api_key(key_id)
    assert legacy is not None and legacy.hash_key is HashKey.DEVICE

    admin = await Administrators(store, keys).authenticate(key)
    assert (admin.key_id, admin.role, admin.tenant_ids) == (key_id, Role.OPERATOR, None)
    document = await store.api_keys.find_one({"_id": key_id})
    assert document is not None and document["hash_key"] == "api"
    assert document["secret_hash"] == keyed_hash(keys.api_key_hash, secret)

    rotated = Keys(owner_api_key="owner", device_secret=b"a-new-device-key", api_key_hash=keys.api_key_hash)
    assert (await Administrators(store, rotated).authenticate(key)).key_id == key_id
