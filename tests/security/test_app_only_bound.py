"""Issue 18, defects 3 and 4, for app-only tenants: a tenant cannot get an app-only token for
another organisation's directory or people.

The deployment's own Microsoft app is confidential (`FLEETMAIL_TOKEN_MICROSOFT_CLIENT_SECRET`
set, as the README allows), and consented in the victim's directory. The victim, tenant A,
sends app-only with its own app in its own directory. The attacker holds tenant B's
fleet_admin key: it makes B app-only, names A's directory, and makes A's CEO B's
administrator (or keeps its own address), hoping token-service asks for a client-credentials
token there with the shared app and the service's secret — with it, B's devices would send
as anyone in A. No client-credentials request may reach Microsoft for B, and A keeps sending.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import device_panel, request_tokens, token_endpoint_calls

from tests.utils.jobs import final_status, submit
from tests.utils.tenants import app_only_tenant, confidential_app, tenant_with_device

CLIENT_CREDENTIALS = "client_credentials"


@contextlib.asynccontextmanager
async def service_app_with_secret(stack, emulator_http: httpx.AsyncClient) -> AsyncIterator[str]:
    """token-service restarted with a confidential service-wide app, then as it was."""
    client_id, secret = await confidential_app(stack, emulator_http)
    part = stack.part("token-service")
    before = dict(part.env)
    part.env = {
        **before,
        "FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID": client_id,
        "FLEETMAIL_TOKEN_MICROSOFT_CLIENT_SECRET": secret,
    }
    await stack.restart_part(part)
    try:
        yield client_id
    finally:
        part.env = before
        await stack.restart_part(part)


@contextlib.asynccontextmanager
async def fleet_admin(stack, admin: httpx.AsyncClient, tenant_id: str) -> AsyncIterator[httpx.AsyncClient]:
    created = await admin.post(
        "/v1/admin/api-keys", json={"name": "site B", "role": "fleet_admin", "tenant_ids": [tenant_id]}
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        yield http


async def victim_sends(stack, tenant_id: str) -> None:
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, {"function": "scan_to_email", "to": ["someone@fabrikam.example"]})
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status


async def test_a_fleet_admin_cannot_get_an_app_only_token_for_another_tenants_directory(
    stack, emulator_http, admin
) -> None:
    async with service_app_with_secret(stack, emulator_http):
        # Tenant A: app-only with its own app, in its own directory, sending.
        directory_a = str(uuid.uuid4())
        client_a, secret_a = await confidential_app(stack, emulator_http, consented_in=directory_a)
        tenant_a, address_a = await app_only_tenant(
            admin, stack, "microsoft", client_id=client_a, directory=directory_a
        )
        await emulator_http.post(
            f"{stack.smtp_control_url}/_emulator/mailboxes",
            json={"address": address_a, "app_access": [client_a]},
        )
        stored = await admin.put(
            f"/v1/admin/tenants/{tenant_a}/credentials", json={"microsoft_client_secret": secret_a}
        )
        assert stored.status_code == 200, stored.text
        await victim_sends(stack, tenant_a)
        ceo = f"ceo@{tenant_a}.example"

        tenant_b, _ = await tenant_with_device(admin, auto_delete=False)
        before = await token_endpoint_calls(stack, emulator_http, CLIENT_CREDENTIALS)
        answers = []
        async with fleet_admin(stack, admin, tenant_b) as dealer:
            settings = (await dealer.get(f"/v1/admin/tenants/{tenant_b}")).json()
            own_address = settings["administrator_address"]
            for administrator in (ceo, own_address):
                moved = {
                    **settings,
                    "administrator_address": administrator,
                    "identity": {**settings["identity"], "app_only": True, "directory": directory_a},
                }
                put = await dealer.put(f"/v1/admin/tenants/{tenant_b}", json=moved)
                assert put.status_code == 200, put.text
                acquired = await dealer.post(f"/v1/admin/tenants/{tenant_b}/tokens/administrator/acquire")
                answers.append((administrator, acquired.status_code, acquired.json()))
                # What B's devices would ask for when they send as that address.
                for kind in (PrincipalKind.ADMINISTRATOR, PrincipalKind.USER):
                    principal = Principal(tenant_id=tenant_b, kind=kind, address=administrator)
                    [reply] = await request_tokens(stack, principal, 1)
                    answers.append((principal, reply.outcome, reply.detail))
            # A directory that is not one (a path into the authority URL) is refused outright.
            sneaky = {**settings, "identity": {**settings["identity"], "directory": f"{directory_a}/../x"}}
            refused = await dealer.put(f"/v1/admin/tenants/{tenant_b}", json=sneaky)

        assert await token_endpoint_calls(stack, emulator_http, CLIENT_CREDENTIALS) == before, answers
        ceo_answer, own_answer = answers[0], answers[3]
        assert ceo_answer[1] == 403 and "not in the mail domains" in ceo_answer[2]["detail"], ceo_answer
        assert own_answer[1] != 200 or own_answer[2].get("state") != "succeeded", own_answer
        assert "microsoft_client_secret" in str(own_answer[2]), own_answer
        for principal, outcome, detail in (answers[1], answers[2], answers[4], answers[5]):
            assert outcome is AccessTokenOutcome.CONFIGURATION_ERROR, (principal, detail)
        assert "not in the mail domains" in (answers[1][2] or "")
        assert "microsoft_client_secret" in (answers[4][2] or "")
        assert refused.status_code == 422 and "identity.directory" in refused.json()["detail"], refused.text
        stored_b = (await admin.get(f"/v1/admin/tenants/{tenant_b}")).json()
        assert stored_b["identity"]["directory"] == directory_a  # the last accepted save, not the path

        # The victim's work is intact: A still sends with its own app.
        await victim_sends(stack, tenant_a)
        principal_a = Principal(tenant_id=tenant_a, kind=PrincipalKind.ADMINISTRATOR, address=address_a)
        [reply_a] = await request_tokens(stack, principal_a, 1)
        assert reply_a.outcome is AccessTokenOutcome.GRANTED
