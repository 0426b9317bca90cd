"""The device directory with an in-memory store: logins by secret and by source address,
and what an administrator may change."""

from __future__ import annotations

import pytest
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import TenantSettings
from job_gateway.errors import DeviceNotFound, DeviceUnauthorized, MachineAddressRefused
from job_gateway.schemas import DeviceChange, DeviceRegistration
from job_gateway.use_cases import DeviceDirectory

from tests.fakes.gateway import InMemoryGatewayStore

TENANT = TenantSettings(tenant_id="t1", administrator_address="admin@t1.example")


@pytest.fixture
def directory() -> DeviceDirectory:
    return DeviceDirectory(InMemoryGatewayStore(), b"device-key")


async def test_a_device_logs_in_with_its_own_current_secret_while_enabled(directory: DeviceDirectory) -> None:
    first = await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    login = await directory.authenticate("mfp-1", first.secret)
    assert (login.device.tenant_id, login.function, login.by) == ("t1", JobFunction.SCAN_TO_EMAIL, "auth")
    second = await directory.rotate_secret("t1", "mfp-1")
    with pytest.raises(DeviceUnauthorized):
        await directory.authenticate("mfp-1", first.secret)
    await directory.change(TENANT, "mfp-1", DeviceChange(disabled=True))
    with pytest.raises(DeviceUnauthorized):
        await directory.authenticate("mfp-1", second.secret)
    with pytest.raises(DeviceUnauthorized):
        await directory.authenticate("nobody", second.secret)


async def test_the_most_specific_allowlist_wins_and_a_tie_lets_nobody_in(directory: DeviceDirectory) -> None:
    await directory.register("t1", DeviceRegistration(device_id="floor", allow_cidrs=["192.0.2.0/24"]))
    await directory.register(
        "t1",
        DeviceRegistration(
            device_id="fax", allow_cidrs=["192.0.2.7/32"], smtp_function=JobFunction.INTERNET_FAX_TX
        ),
    )
    fax = await directory.by_address("192.0.2.7")
    assert fax is not None and (fax.device.device_id, fax.function, fax.by) == (
        "fax",
        JobFunction.INTERNET_FAX_TX,
        "address",
    )
    floor = await directory.by_address("192.0.2.8")
    assert floor is not None and floor.device.device_id == "floor"
    assert (
        await directory.by_address("198.51.100.1") is None and await directory.by_address("not-an-ip") is None
    )
    await directory.register("t1", DeviceRegistration(device_id="twin", allow_cidrs=["192.0.2.0/24"]))
    assert await directory.by_address("192.0.2.8") is None


async def test_devices_are_the_tenants_own(directory: DeviceDirectory) -> None:
    first = await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    with pytest.raises(DeviceNotFound):
        await directory.change(TenantSettings(tenant_id="t2"), "mfp-1", DeviceChange(disabled=True))
    with pytest.raises(DeviceNotFound):
        await directory.rotate_secret("t2", "mfp-1")
    assert [d.device_id for d in await directory.in_tenant("t1")] == ["mfp-1"]
    assert await directory.in_tenant("t2") == []
    # The same id in another tenant is another device; each logs in with its own secret.
    second = await directory.register("t2", DeviceRegistration(device_id="mfp-1"))
    assert second.tenant_id == "t2"
    assert (await directory.authenticate("mfp-1", first.secret)).device.tenant_id == "t1"
    assert (await directory.authenticate("mfp-1", second.secret)).device.tenant_id == "t2"
    await directory.change(TenantSettings(tenant_id="t2"), "mfp-1", DeviceChange(disabled=True))
    with pytest.raises(DeviceUnauthorized):
        await directory.authenticate("mfp-1", second.secret)
    assert (await directory.authenticate("mfp-1", first.secret)).device.tenant_id == "t1"


async def test_the_fax_machine_address_is_the_administrators(directory: DeviceDirectory) -> None:
    await directory.register("t1", DeviceRegistration(device_id="fax"))
    with pytest.raises(MachineAddressRefused):
        await directory.change(TENANT, "fax", DeviceChange(machine_address="fax@elsewhere.example"))
    changed = await directory.change(TENANT, "fax", DeviceChange(machine_address="Admin@t1.example"))
    assert changed.machine_address == "Admin@t1.example"
    login = await directory.by_address("192.0.2.1")
    assert login is None  # no allowlist, no address login
