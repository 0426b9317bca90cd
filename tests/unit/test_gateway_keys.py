"""Device secrets and administrators' API keys are hashed under separate keys: rotating one
never revokes the other, and API keys made before the split keep working."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from job_gateway.credentials import HashKey, Keys, keyed_hash, new_api_key
from job_gateway.domain import Administrator, Role
from job_gateway.errors import AdministratorUnauthorized, DeviceUnauthorized, TenantsRequired
from job_gateway.ports import StoredApiKey
from job_gateway.schemas import ApiKeyRequest, DeviceRegistration
from job_gateway.use_cases import Administrators, DeviceDirectory

from tests.fakes.gateway import InMemoryGatewayStore

KEYS = Keys(owner_api_key="the-owner-key", device_secret=b"device-key-1", api_key_hash=b"api-key-1")
NOC = ApiKeyRequest(name="NOC", role="operator")


async def test_an_api_key_made_before_the_split_still_works_and_then_survives_a_device_key_rotation() -> None:
    store = InMemoryGatewayStore()
    key_id, secret, key = new_api_key()
    # As job-gateway stored it before API keys had their own hash key.
    await store.save_api_key(
        StoredApiKey(
            key_id,
            "NOC",
            Role.OPERATOR,
            None,
            keyed_hash(KEYS.device_secret, secret),
            HashKey.DEVICE,
            datetime.now(UTC),
        )
    )
    assert await Administrators(store, KEYS).authenticate(key) == Administrator(key_id, Role.OPERATOR, None)
    moved = await store.api_key(key_id)
    assert moved is not None and moved.hash_key is HashKey.API
    assert moved.secret_hash == keyed_hash(KEYS.api_key_hash, secret)

    rotated = replace(KEYS, device_secret=b"device-key-2")
    assert (await Administrators(store, rotated).authenticate(key)).key_id == key_id


async def test_before_its_first_use_an_old_key_still_depends_on_the_device_key() -> None:
    store = InMemoryGatewayStore()
    key_id, secret, key = new_api_key()
    await store.save_api_key(
        StoredApiKey(
            key_id,
            "NOC",
            Role.OPERATOR,
            None,
            keyed_hash(KEYS.device_secret, secret),
            HashKey.DEVICE,
            datetime.now(UTC),
        )
    )
    with pytest.raises(AdministratorUnauthorized):
        await Administrators(store, replace(KEYS, device_secret=b"device-key-2")).authenticate(key)


async def test_rotating_the_device_secret_key_does_not_revoke_api_keys() -> None:
    store = InMemoryGatewayStore()
    created = await Administrators(store, KEYS).create(NOC)
    assert created.key is not None
    devices = DeviceDirectory(store, KEYS.device_secret)
    device = await devices.register("t1", DeviceRegistration(device_id="mfp-1"))

    rotated = replace(KEYS, device_secret=b"device-key-2")
    assert (await Administrators(store, rotated).authenticate(created.key)).key_id == created.key_id
    # What rotating the device secret key is for: every device secret stops working.
    with pytest.raises(DeviceUnauthorized):
        await DeviceDirectory(store, rotated.device_secret).authenticate("mfp-1", device.secret)


async def test_rotating_the_api_key_hash_key_does_not_revoke_device_secrets() -> None:
    store = InMemoryGatewayStore()
    created = await Administrators(store, KEYS).create(NOC)
    assert created.key is not None
    device = await DeviceDirectory(store, KEYS.device_secret).register(
        "t1", DeviceRegistration(device_id="mfp-1")
    )

    rotated = replace(KEYS, api_key_hash=b"api-key-2")
    login = await DeviceDirectory(store, rotated.device_secret).authenticate("mfp-1", device.secret)
    assert login.device.tenant_id == "t1"
    with pytest.raises(AdministratorUnauthorized):
        await Administrators(store, rotated).authenticate(created.key)


async def test_a_new_key_is_hashed_under_the_api_key_hash_key_and_shown_once() -> None:
    store = InMemoryGatewayStore()
    administrators = Administrators(store, KEYS)
    created = await administrators.create(
        ApiKeyRequest(name="Contoso IT", role="fleet_admin", tenant_ids=["t1"])
    )
    assert created.key is not None and created.key.startswith(f"fmk_{created.key_id}_")
    stored = await store.api_key(created.key_id)
    assert stored is not None and stored.hash_key is HashKey.API
    assert created.key.removeprefix(f"fmk_{created.key_id}_") not in repr(stored)
    assert [view.key for view in await administrators.all()] == [None]
    admin = await administrators.authenticate(created.key)
    assert (admin.role, admin.tenant_ids) == (Role.FLEET_ADMIN, ("t1",))


async def test_the_owner_key_a_forged_key_and_a_revoked_key() -> None:
    store = InMemoryGatewayStore()
    administrators = Administrators(store, KEYS)
    assert (await administrators.authenticate("the-owner-key")).role is Role.OWNER
    created = await administrators.create(NOC)
    assert created.key is not None
    for forged in ("fmk_nope_nope", "Bearer nonsense", created.key + "x", "the-owner-key-not"):
        with pytest.raises(AdministratorUnauthorized):
            await administrators.authenticate(forged)
    assert await administrators.delete(created.key_id) is True
    with pytest.raises(AdministratorUnauthorized):
        await administrators.authenticate(created.key)


async def test_a_fleet_admin_key_names_its_tenants_and_an_empty_operator_list_means_all() -> None:
    administrators = Administrators(InMemoryGatewayStore(), KEYS)
    with pytest.raises(TenantsRequired):
        await administrators.create(ApiKeyRequest(name="x", role="fleet_admin"))
    everywhere = await administrators.create(ApiKeyRequest(name="y", role="operator", tenant_ids=[]))
    assert everywhere.key is not None and everywhere.tenant_ids == []
    assert (await administrators.authenticate(everywhere.key)).tenant_ids is None


async def test_a_console_session_resumes_while_its_key_is_the_same() -> None:
    store = InMemoryGatewayStore()
    administrators = Administrators(store, KEYS)
    created = await administrators.create(
        ApiKeyRequest(name="Contoso IT", role="fleet_admin", tenant_ids=["t1"])
    )
    assert created.key is not None
    signed_in = await administrators.sign_in(created.key)
    assert (signed_in.name, signed_in.administrator.tenant_ids) == ("Contoso IT", ("t1",))
    assert created.key.removeprefix(f"fmk_{created.key_id}_") not in signed_in.fingerprint
    resumed = await administrators.resume(created.key_id, signed_in.fingerprint)
    assert resumed.administrator == signed_in.administrator
    with pytest.raises(AdministratorUnauthorized):
        await administrators.resume(created.key_id, "another-fingerprint")
    await administrators.delete(created.key_id)
    with pytest.raises(AdministratorUnauthorized):
        await administrators.resume(created.key_id, signed_in.fingerprint)


async def test_an_owner_session_ends_when_the_owner_key_changes() -> None:
    store = InMemoryGatewayStore()
    signed_in = await Administrators(store, KEYS).sign_in("the-owner-key")
    assert signed_in.administrator.role is Role.OWNER and "the-owner-key" not in signed_in.fingerprint
    assert (await Administrators(store, KEYS).resume("owner", signed_in.fingerprint)).name == "owner"
    changed = Administrators(store, replace(KEYS, owner_api_key="a-new-owner-key"))
    with pytest.raises(AdministratorUnauthorized):
        await changed.resume("owner", signed_in.fingerprint)
    with pytest.raises(AdministratorUnauthorized):
        await Administrators(store, KEYS).sign_in("fmk_nope_nope")
