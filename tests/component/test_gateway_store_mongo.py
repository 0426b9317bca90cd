"""The store contract on job-gateway's MongoDB adapter; API keys stored before they had their
own hash key, and devices stored when device ids were global, read on the real adapter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fleetmail_contracts.tenants import TenantSettings
from job_gateway.adapters.mongo import MongoStore
from job_gateway.credentials import HashKey, Keys, keyed_hash, new_api_key
from job_gateway.domain import Role
from job_gateway.ports import GatewayStore
from job_gateway.schemas import DeviceRegistration
from job_gateway.use_cases import Administrators, DeviceDirectory
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


async def test_a_device_stored_when_device_ids_were_global_still_logs_in_and_is_its_tenants(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    store = MongoStore(client, f"gateway_{uuid.uuid4().hex[:10]}")
    # The record exactly as job-gateway wrote it before: `_id` = the device id, no device_id.
    await store.devices.insert_one(
        {
            "_id": "mfp-old",
            "tenant_id": "t1",
            "name": "Floor 1",
            "secret_hash": keyed_hash(b"device-key", "old-secret"),
            "disabled": False,
            "created_at": datetime.now(UTC),
            "allow_cidrs": [],
            "smtp_function": "scan_to_email",
        }
    )
    await store.ensure_indexes()
    await store.ensure_indexes()  # every start runs it: nothing changes the second time
    directory = DeviceDirectory(store, b"device-key")
    assert (await directory.authenticate("mfp-old", "old-secret")).device.tenant_id == "t1"
    assert [d.device_id for d in await directory.in_tenant(TenantSettings(tenant_id="t1"))] == ["mfp-old"]
    # Another tenant may now use the same id; the old device keeps its secret and its tenant.
    other = await directory.register("t2", DeviceRegistration(device_id="mfp-old"))
    # Counted once when first found without counts, then by each registration.
    counts = await store.tenant_counts(None, datetime.now(UTC))
    assert (counts["t1"].devices, counts["t2"].devices) == (1, 1)
    assert (await directory.authenticate("mfp-old", other.secret)).device.tenant_id == "t2"
    assert (await directory.authenticate("mfp-old", "old-secret")).device.tenant_id == "t1"
    rotated = await directory.rotate_secret("t1", "mfp-old")
    assert (await directory.authenticate("mfp-old", rotated.secret)).device.tenant_id == "t1"
