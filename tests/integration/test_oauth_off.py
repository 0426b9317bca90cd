"""A tenant with OAuth 2.0 off (the device's default): SMTP AUTH PLAIN/LOGIN with the tenant's
stored credentials, or no AUTH at all — so a fleet moves to OAuth tenant by tenant."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fleetmail_devkit.probes import device_panel

from tests.utils.jobs import final_status, received, submit
from tests.utils.tenants import stored_documents


@pytest.fixture
async def basic_tenant(stack, admin, emulator_http) -> AsyncIterator[tuple[str, str, httpx.AsyncClient]]:
    """A tenant with OAuth off, its mailbox at the SMTP emulator, and a device's panel."""
    tenant_id = f"basic-{uuid.uuid4().hex[:8]}"
    address = f"scanner@{tenant_id}.example"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "administrator_address": address,
            "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
        },
    )
    assert created.status_code == 200 and created.json()["oauth_enabled"] is False
    password = f"pw-{uuid.uuid4().hex}"
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes", json={"address": address, "password": password}
    )
    async with device_panel(stack, tenant_id) as panel:
        yield tenant_id, password, panel


async def send_one(panel: httpx.AsyncClient) -> tuple[str, dict]:
    job_id = await submit(panel, {"function": "scan_to_email", "to": ["someone@fabrikam.example"]})
    return job_id, await final_status(panel, job_id)


async def test_stored_username_and_password_are_used_and_stay_sealed(
    stack, admin, emulator_http, basic_tenant
) -> None:
    tenant_id, password, panel = basic_tenant
    address = f"scanner@{tenant_id}.example"
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials",
        json={"smtp_username": address, "smtp_password": password},
    )
    assert saved.status_code == 200 and saved.json()["smtp_password"] is True
    assert password not in saved.text

    job_id, status = await send_one(panel)
    assert status["status"] == "sent", status
    entry, _ = await received(stack, emulator_http, job_id)
    assert entry["auth_mechanism"] == "PLAIN/LOGIN" and entry["auth_user"] == address
    assert password not in await stored_documents(stack, tenant_id)


async def test_a_wrong_password_fails_with_the_remedy(admin, basic_tenant) -> None:
    tenant_id, _, panel = basic_tenant
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials",
        json={"smtp_username": f"scanner@{tenant_id}.example", "smtp_password": "not-it"},
    )
    _, status = await send_one(panel)
    assert status["status"] == "failed" and status["reason_code"] == "authentication_failed"
    assert status["smtp_reply"].startswith("535") and "stored username and password" in status["remedy"]


async def test_without_stored_credentials_a_submission_server_refuses_and_a_relay_accepts(
    stack, emulator_http, basic_tenant
) -> None:
    _, _, panel = basic_tenant
    _, refused = await send_one(panel)
    assert refused["status"] == "failed" and refused["smtp_reply"].startswith("530 5.7.57")
    assert "SMTP username and password" in refused["remedy"]

    await emulator_http.post(f"{stack.smtp_control_url}/_emulator/settings", json={"require_auth": False})
    try:
        job_id, status = await send_one(panel)
    finally:
        await emulator_http.post(f"{stack.smtp_control_url}/_emulator/settings", json={"require_auth": True})
    assert status["status"] == "sent", status
    entry, _ = await received(stack, emulator_http, job_id)
    assert entry["auth_mechanism"] is None


async def test_after_basic_auth_is_removed_the_failure_says_switch_to_oauth(
    stack, admin, emulator_http, basic_tenant
) -> None:
    tenant_id, password, panel = basic_tenant
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials",
        json={"smtp_username": f"scanner@{tenant_id}.example", "smtp_password": password},
    )
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/settings", json={"basic_auth_removed": True}
    )
    try:
        _, status = await send_one(panel)
    finally:
        await emulator_http.post(
            f"{stack.smtp_control_url}/_emulator/settings", json={"basic_auth_removed": False}
        )
    assert status["status"] == "failed" and status["reason_code"] == "basic_auth_refused"
    assert status["smtp_reply"].startswith("550 5.7.30") and "OAuth 2.0" in status["remedy"]


async def test_clearing_the_password_removes_it(admin, basic_tenant) -> None:
    tenant_id, password, _ = basic_tenant
    await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"smtp_password": password})
    cleared = await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"clear": ["smtp_password"]})
    assert cleared.status_code == 200 and cleared.json()["smtp_password"] is False
    unknown = await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"clear": ["password"]})
    assert unknown.status_code == 422
