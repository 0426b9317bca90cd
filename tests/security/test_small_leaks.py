"""Defect 7 of issue 18: smaller leaks between tenants, through the admin API."""

from __future__ import annotations

import json
import uuid

import httpx
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils.jobs import final_status


async def _key(admin: httpx.AsyncClient, role: str, tenant_ids: list[str] | None) -> str:
    created = await admin.post(
        "/v1/admin/api-keys",
        json={"name": f"{role}-{uuid.uuid4().hex[:4]}", "role": role, "tenant_ids": tenant_ids},
    )
    assert created.status_code == 201, created.text
    return created.json()["key"]


def _as(stack, key: str | bytes) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.gateway_url, headers={"Authorization": key}, timeout=30)


async def test_the_same_device_id_in_two_tenants_is_two_devices(stack, emulator_http, admin) -> None:
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    device_id = f"scanner-{uuid.uuid4().hex[:6]}"
    victim_device = await admin.post(
        f"/v1/admin/tenants/{victim.tenant_id}/devices", json={"device_id": device_id}
    )
    assert victim_device.status_code == 201
    # Registering a name another tenant uses neither fails (which would reveal it) nor
    # replaces the other tenant's device.
    attacker_device = await admin.post(
        f"/v1/admin/tenants/{attacker.tenant_id}/devices", json={"device_id": device_id}
    )
    assert attacker_device.status_code == 201, attacker_device.text
    assert attacker_device.json()["tenant_id"] == attacker.tenant_id
    for tenant, registered in ((victim, victim_device), (attacker, attacker_device)):
        [listed] = (await admin.get(f"/v1/admin/tenants/{tenant.tenant_id}/devices")).json()
        assert listed["device_id"] == device_id and listed["tenant_id"] == tenant.tenant_id
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, registered.json()["secret"]), timeout=60
        ) as panel:
            queued = await panel.post(
                "/v1/jobs", data={"job": json.dumps({"to": ["boss@fabrikam.example"], "subject": "mine"})}
            )
            assert queued.status_code == 202, queued.text
            status = await final_status(panel, queued.json()["job_id"])
        assert status["status"] == "sent" and status["tenant_id"] == tenant.tenant_id, status
    # Each tenant's rotation, disabling, changes stay its own.
    rotated = await admin.post(f"/v1/admin/tenants/{attacker.tenant_id}/devices/{device_id}/secret")
    assert rotated.status_code == 200
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(device_id, victim_device.json()["secret"]), timeout=60
    ) as panel:
        assert (await panel.get("/v1/device/information")).status_code == 200
