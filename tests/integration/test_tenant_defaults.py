"""The device's defaults and states through the running API and CLI: a tenant saved with
nothing but its id has OAuth 2.0 off, provider Microsoft and Auto Delete disabled; OAuth 2.0
on without the administrator's address is refused with the reason; the administrator's
[Refresh Tokens] row reads "Not acquired" until [Acquire] succeeds; the device SMTP listener
takes TLS 1.2 and 1.3. The rules themselves: tests/unit/test_tenant_defaults.py."""

from __future__ import annotations

import asyncio
import ssl
import uuid

import pytest
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils.cli import cli


async def test_a_tenant_saved_with_only_its_id_has_the_devices_defaults(admin) -> None:
    tenant_id = f"d-{uuid.uuid4().hex[:8]}"
    saved = await admin.put(f"/v1/admin/tenants/{tenant_id}", json={"tenant_id": tenant_id})
    assert saved.status_code == 200, saved.text
    shown = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    assert shown["oauth_enabled"] is False and shown["provider"] == "microsoft"
    assert shown["auto_delete"] is False and shown["smtp"] is None


async def test_oauth_on_without_the_administrators_address_is_refused_with_the_reason(admin) -> None:
    tenant_id = f"d-{uuid.uuid4().hex[:8]}"
    refused = await admin.put(
        f"/v1/admin/tenants/{tenant_id}", json={"tenant_id": tenant_id, "oauth_enabled": True}
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("administrator-address-required"), problem
    assert "administrator_address" in problem["detail"] and "OAuth 2.0" in problem["detail"]
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).status_code == 404


async def test_the_administrators_row_reads_not_acquired_until_acquire(stack, emulator_http, admin) -> None:
    tenant_id = f"d-{uuid.uuid4().hex[:8]}"
    address = f"admin@{tenant_id}.example"
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={"tenant_id": tenant_id, "oauth_enabled": True, "administrator_address": address},
    )
    tokens = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()
    assert tokens["administrator"] == {"address": address, "status": "not_acquired"}
    assert tokens["grants"] == [] and tokens["transport"]["ready"] is False, tokens
    shown = await asyncio.to_thread(cli, stack, "tokens", "status", tenant_id)
    assert shown.exit_code == 0 and address in shown.output and "Not acquired" in shown.output

    principal = await tenant_with_administrator_grant(stack, emulator_http)
    acquired = (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}/tokens")).json()
    assert acquired["administrator"] == {"address": principal.address, "status": "acquired"}
    shown = await asyncio.to_thread(cli, stack, "tokens", "status", principal.tenant_id)
    assert "Acquired" in shown.output and "Not acquired" not in shown.output


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["1.2", "1.3"])
async def test_the_device_smtp_listener_takes_tls_1_2_and_1_3(stack, version: ssl.TLSVersion) -> None:
    context = stack.ssl_context()
    context.minimum_version = context.maximum_version = version
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", stack.ports.gateway_smtps, ssl=context, server_hostname="localhost"
    )
    try:
        assert (await reader.readline()).startswith(b"220")
        assert (
            writer.get_extra_info("ssl_object").version()
            == {
                ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                ssl.TLSVersion.TLSv1_3: "TLSv1.3",
            }[version]
        )
    finally:
        writer.close()
