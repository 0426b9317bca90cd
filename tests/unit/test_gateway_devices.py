"""The device directory with an in-memory store: logins by secret and by source address,
and what an administrator may change."""

from __future__ import annotations

import pytest
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import TenantSettings
from job_gateway.domain import Device
from job_gateway.errors import (
    AllowlistOverlap,
    AllowlistRangeRefused,
    DeviceNotFound,
    DeviceUnauthorized,
    MachineAddressRefused,
    SignInHereRequired,
)
from job_gateway.schemas import DeviceChange, DeviceRegistration, SmtpRule
from job_gateway.settings import GatewaySettings
from job_gateway.smtp_listener import SubmissionHandler
from job_gateway.use_cases import DeviceDirectory, JobIntake

from tests.fakes.gateway import InMemoryAttachments, InMemoryGatewayStore, RecordingPublisher

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


async def test_an_address_belongs_to_one_device_and_the_index_follows_changes(
    directory: DeviceDirectory,
) -> None:
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
    assert (
        await directory.by_address("198.51.100.1") is None and await directory.by_address("not-an-ip") is None
    )
    # Another device, of this tenant or another, cannot hold it too; nor the whole Internet.
    for tenant in ("t1", "t2"):
        with pytest.raises(AllowlistOverlap):
            await directory.register(tenant, DeviceRegistration(device_id="twin", allow_cidrs=["192.0.2.7"]))
    with pytest.raises(AllowlistRangeRefused):
        await directory.register("t2", DeviceRegistration(device_id="open", allow_cidrs=["0.0.0.0/0"]))
    await directory.register("t2", DeviceRegistration(device_id="mfp"))
    with pytest.raises(AllowlistOverlap):
        await directory.change(
            TenantSettings(tenant_id="t2"), "mfp", DeviceChange(allow_cidrs=["192.0.2.7/32"])
        )
    # A device may keep its own range when it changes; a disabled device lets nobody in.
    await directory.change(TENANT, "fax", DeviceChange(allow_cidrs=["192.0.2.7/32"], name="Fax"))
    await directory.change(TENANT, "fax", DeviceChange(disabled=True))
    assert await directory.by_address("192.0.2.7") is None
    # Given up, the address is free for another device, and the index says so at once.
    await directory.change(TENANT, "fax", DeviceChange(allow_cidrs=[]))
    await directory.change(TenantSettings(tenant_id="t2"), "mfp", DeviceChange(allow_cidrs=["192.0.2.7/32"]))
    moved = await directory.by_address("192.0.2.7")
    assert moved is not None and (moved.device.tenant_id, moved.device.device_id) == ("t2", "mfp")


async def test_the_index_sees_other_replicas_changes_when_reloaded() -> None:
    store = InMemoryGatewayStore()
    here, there = DeviceDirectory(store, b"device-key"), DeviceDirectory(store, b"device-key")
    await there.register("t1", DeviceRegistration(device_id="fax", allow_cidrs=["192.0.2.7/32"]))
    assert await here.by_address("192.0.2.7") is None  # from memory: not read yet
    await here.reload()  # what the periodic refresh does
    found = await here.by_address("192.0.2.7")
    assert found is not None and found.device.device_id == "fax"


async def test_devices_are_the_tenants_own(directory: DeviceDirectory) -> None:
    first = await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    with pytest.raises(DeviceNotFound):
        await directory.change(TenantSettings(tenant_id="t2"), "mfp-1", DeviceChange(disabled=True))
    with pytest.raises(DeviceNotFound):
        await directory.rotate_secret("t2", "mfp-1")
    assert [d.device_id for d in await directory.in_tenant(TenantSettings(tenant_id="t1"))] == ["mfp-1"]
    assert await directory.in_tenant(TenantSettings(tenant_id="t2")) == []
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


async def test_a_devices_smtp_rules_come_with_its_login_and_are_changed_or_cleared(
    directory: DeviceDirectory,
) -> None:
    counters = SmtpRule(function=JobFunction.TOTAL_COUNTER_NOTIFICATION, subject="*counter*")
    status = SmtpRule(function=JobFunction.STATUS_NOTIFICATION, recipient="status@*")
    registered = await directory.register(
        "t1", DeviceRegistration(device_id="mfp-1", allow_cidrs=["192.0.2.9/32"], smtp_rules=[counters])
    )
    assert (await directory.authenticate("mfp-1", registered.secret)).rules == (counters,)
    by_address = await directory.by_address("192.0.2.9")
    assert by_address is not None and by_address.rules == (counters,)
    view = await directory.change(TENANT, "mfp-1", DeviceChange(smtp_rules=[status, counters]))
    assert view.smtp_rules == [status, counters]
    assert (await directory.authenticate("mfp-1", registered.secret)).rules == (status, counters)
    again = await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    assert (await directory.authenticate("mfp-1", again.secret)).rules == ()


async def test_a_devices_session_users_are_bounded_and_one_more_is_logged_not_noted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = DeviceDirectory(InMemoryGatewayStore(), b"device-key", max_session_users=2)
    await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    device = Device("mfp-1", "t1")
    for user in ("a@t1.example", "B@t1.example", "c@t1.example"):
        await directory.note_session(device, user)
    assert await directory.session_users(device) == ["a@t1.example", "b@t1.example"]
    assert "already lists 2 session users: c@t1.example is not noted" in caplog.text


async def test_a_message_over_smtp_uses_a_users_grant_only_after_their_sign_in_at_that_device() -> None:
    """User grants are the tenant's: without this, a message From any user signed in at any
    device would be sent as that user from every device."""
    store = InMemoryGatewayStore()
    directory = DeviceDirectory(store, b"device-key")
    here = await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    await directory.register("t1", DeviceRegistration(device_id="mfp-2"))
    with_grants = {"ann@t1.example"}

    async def has_user_grant(tenant_id: str, user: str) -> bool:
        return tenant_id == "t1" and user.casefold() in with_grants

    settings = GatewaySettings()
    intake = JobIntake(settings, store, InMemoryAttachments(), RecordingPublisher())
    handler = SubmissionHandler(intake, directory, settings, has_user_grant=has_user_grant)
    device = (await directory.authenticate("mfp-1", here.secret)).device
    with pytest.raises(SignInHereRequired, match=r"sign in as ann@t1\.example at this device"):
        await handler.check_signed_in_here(device, "ann@t1.example")
    await handler.check_signed_in_here(device, "bob@t1.example")  # no grant: the job waits for one
    await directory.note_sign_in(Device("mfp-2", "t1"), "ann@t1.example")  # another device's
    with pytest.raises(SignInHereRequired):
        await handler.check_signed_in_here(Device("mfp-1", "t1"), "ann@t1.example")
    await directory.note_sign_in(Device("mfp-1", "t1"), "Ann@t1.example")
    await handler.check_signed_in_here(Device("mfp-1", "t1"), "ann@t1.example")  # read from the store
    device = (await directory.authenticate("mfp-1", here.secret)).device
    assert device.signed_in_users == frozenset({"ann@t1.example"})
    await handler.check_signed_in_here(device, "ANN@t1.example")
    await directory.end_sessions(device, ["ann@t1.example"])  # logout or auto reset
    with pytest.raises(SignInHereRequired):
        await handler.check_signed_in_here(Device("mfp-1", "t1"), "ann@t1.example")
