"""Issue 18, defect 4: a user's grant belongs to the tenant whose people sign in with it.

The attacker controls tenant B: one of its devices (its id and secret) and its fleet_admin
key. The victim is Anna, of tenant A (mail domain `<A>.example`). Before the fix, B's device
could start a sign-in for Anna and, had she approved the code B showed her (phishing), B's
devices would have sent as her. Now every way B tries — a device code or a browser sign-in
from its device, listing A's domain as its own, making Anna its administrator — is refused
before the identity provider is asked, and Anna's own sign-in at A's device works as before.
"""

from __future__ import annotations

import uuid

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens

from tests.utils.tenants import tenant_with_device, user_signs_in

OUTSIDE = "https://fleetmail.dev/problems/address-outside-tenant"


async def device_code_requests(stack, emulator_http: httpx.AsyncClient) -> int:
    return int(
        (await emulator_http.get(f"{stack.microsoft_url}/_emulator/calls")).json().get("devicecode", 0)
    )


async def test_another_tenants_device_and_administrator_cannot_sign_in_the_victims_people(
    stack, emulator_http, admin
) -> None:
    tenant_a, device_a = await tenant_with_device(admin, auto_delete=False)
    tenant_b, device_b = await tenant_with_device(admin, auto_delete=False)
    anna = f"anna-{uuid.uuid4().hex[:4]}@{tenant_a}.example"
    key = await admin.post(
        "/v1/admin/api-keys", json={"name": "site B", "role": "fleet_admin", "tenant_ids": [tenant_b]}
    )
    assert key.status_code == 201, key.text
    before = await device_code_requests(stack, emulator_http)

    async with (
        httpx.AsyncClient(base_url=stack.gateway_url, auth=device_b, timeout=30) as panel_b,
        httpx.AsyncClient(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {key.json()['key']}"}, timeout=30
        ) as admin_b,
    ):
        # From B's device: a code to show Anna, or a link to send her.
        by_code = await panel_b.post("/v1/device/sign-ins", json={"user": anna})
        by_link = await panel_b.post("/v1/device/sign-ins", json={"user": anna, "flow": "authorization_code"})
        # As B's administrator: list A's domain as B's own, or make Anna B's administrator.
        settings = (await admin_b.get(f"/v1/admin/tenants/{tenant_b}")).json()
        listed = await admin_b.put(
            f"/v1/admin/tenants/{tenant_b}", json={**settings, "mail_domains": [f"{tenant_a}.example"]}
        )
        after_listing = await panel_b.post("/v1/device/sign-ins", json={"user": anna})
        moved = await admin_b.put(
            f"/v1/admin/tenants/{tenant_b}", json={**settings, "administrator_address": anna}
        )
        as_administrator = await admin_b.post(f"/v1/admin/tenants/{tenant_b}/tokens/administrator/acquire")

    assert await device_code_requests(stack, emulator_http) == before  # Microsoft was never asked
    for refused in (by_code, by_link, after_listing, as_administrator):
        assert refused.status_code == 403, refused.text
        problem = refused.json()
        assert (
            problem["type"] == OUTSIDE
            and anna in problem["detail"]
            and f"{tenant_b}.example" in problem["detail"]
        )
    assert listed.status_code == 403 and "only the owner key" in listed.json()["detail"]
    assert moved.status_code == 200 and moved.json()["mail_domains"] == [f"{tenant_b}.example"]
    in_b = Principal(tenant_id=tenant_b, kind=PrincipalKind.USER, address=anna)
    assert (await request_tokens(stack, in_b, 1))[0].outcome is AccessTokenOutcome.NO_GRANT

    # The victim's work is intact: Anna signs in at her own tenant's device and sends.
    await user_signs_in(stack, emulator_http, device_a, anna)
    in_a = Principal(tenant_id=tenant_a, kind=PrincipalKind.USER, address=anna)
    assert (await request_tokens(stack, in_a, 1))[0].outcome is AccessTokenOutcome.GRANTED
    assert (await request_tokens(stack, in_b, 1))[0].outcome is AccessTokenOutcome.NO_GRANT


async def test_the_owner_lists_a_tenants_mail_domains_and_only_those_sign_in(
    stack, emulator_http, admin
) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    assert settings["mail_domains"] == [f"{tenant_id}.example"]  # the administrator's, by default
    listed = await admin.put(
        f"/v1/admin/tenants/{tenant_id}", json={**settings, "mail_domains": ["Branch.Fabrikam.example"]}
    )
    assert listed.status_code == 200 and listed.json()["mail_domains"] == ["branch.fabrikam.example"]
    await user_signs_in(stack, emulator_http, device, f"bo-{uuid.uuid4().hex[:4]}@branch.fabrikam.example")
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        unlisted = await panel.post("/v1/device/sign-ins", json={"user": f"bo@{tenant_id}.example"})
    assert unlisted.status_code == 403 and unlisted.json()["type"] == OUTSIDE
