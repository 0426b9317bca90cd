"""Defect 7 of issue 18: smaller leaks between tenants, through the admin API."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils.jobs import final_status
from tests.utils.tenants import new_tenant


async def _key(admin: httpx.AsyncClient, role: str, tenant_ids: list[str] | None) -> str:
    created = await admin.post(
        "/v1/admin/api-keys",
        json={"name": f"{role}-{uuid.uuid4().hex[:4]}", "role": role, "tenant_ids": tenant_ids},
    )
    assert created.status_code == 201, created.text
    return created.json()["key"]


def _as(stack, key: str | bytes) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.gateway_url, headers={"Authorization": key}, timeout=30)


async def test_a_key_scoped_to_a_tenant_sees_no_fleet_wide_queues(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    assert (await admin.get("/v1/admin/queues")).json(), "the owner sees the shared queues"
    for role in ("fleet_admin", "operator"):
        async with _as(stack, f"Bearer {await _key(admin, role, [tenant_id])}") as scoped:
            answer = await scoped.get("/v1/admin/queues")
        assert answer.status_code == 200 and answer.json() == [], (role, answer.text)
    async with _as(stack, f"Bearer {await _key(admin, 'operator', None)}") as fleet_operator:
        assert (await fleet_operator.get("/v1/admin/queues")).json()


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


async def test_an_operator_key_does_not_see_proxy_credentials(stack, admin) -> None:
    tenant_id, address = await new_tenant(admin)
    proxy = "http://fleet-user:Pr0xy-Secret@proxy.contoso.example:3128"
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": address,
            "proxy_url": proxy,
        },
    )
    assert saved.status_code == 200, saved.text
    async with _as(stack, f"Bearer {await _key(admin, 'operator', [tenant_id])}") as operator:
        one = await operator.get(f"/v1/admin/tenants/{tenant_id}")
        listed = await operator.get("/v1/admin/tenants")
    for answer in (one, listed):
        assert answer.status_code == 200
        assert "Pr0xy-Secret" not in answer.text and "fleet-user" not in answer.text, answer.text
    assert "proxy.contoso.example:3128" in one.text  # where it goes, still shown
    async with _as(stack, f"Bearer {await _key(admin, 'fleet_admin', [tenant_id])}") as fleet_admin:
        assert (await fleet_admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["proxy_url"] == proxy


async def test_non_ascii_credentials_are_refused_with_401(stack) -> None:
    """Bytes an HTTP client may send in a header: never a 500 (which would say the gateway
    trips over them, and shows up as our own failure)."""
    for key in (
        "Bearer fmk_\u00e9t\u00e9_x".encode("latin-1"),
        "Bearer \u00e9t\u00e9".encode(),
        "Bearer fmk_abc_\u00e9".encode(),
        "Bearer \u2603".encode(),
    ):
        async with _as(stack, key) as stranger:
            answer = await stranger.get("/v1/admin/tenants")
        assert answer.status_code == 401, (key, answer.text)
    device = base64.b64encode("sc\u00e4nner:s\u00e9cret".encode())
    for basic in (b"Basic " + device, "Basic \u00e9".encode()):
        async with _as(stack, basic) as stranger:
            answer = await stranger.get("/v1/device/information")
        assert answer.status_code == 401, (basic, answer.text)
