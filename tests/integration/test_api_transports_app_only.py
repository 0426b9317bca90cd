"""App-only sending through the mail APIs: a Microsoft app with the application permission
Mail.Send through Graph, a Google service account with domain-wide delegation for gmail.send
through the Gmail API — and, before an administrator allowed it, a job that fails as a setting
to fix, with the remedy that names what to allow."""

import hashlib
import uuid
from collections.abc import AsyncIterator

import jwt
import pytest
from fleetmail_devkit.probes import SmtpEmulator, device_panel, smtp_emulator

from tests.utils import eventually
from tests.utils.jobs import final_status, received, submit
from tests.utils.mail_apis import GMAIL_SEND, GRAPH
from tests.utils.tenants import app_only_tenant, confidential_app

SCAN = {"function": "scan_to_email", "to": ["someone@fabrikam.example"]}


@pytest.fixture(scope="module")
async def gmail(stack) -> AsyncIterator[SmtpEmulator]:
    async with smtp_emulator(stack, "gmail", api_port=stack.ports.gmail_api) as running:
        yield running


async def graph_app(stack, emulator_http, admin, consented: bool) -> tuple[str, str, str]:
    """An app-only Microsoft tenant whose transport is graph, its app's secret stored and its
    token acquired; (tenant id, address, client id). `consented`: an administrator granted the
    app Graph's Mail.Send."""
    client_id, secret = await confidential_app(stack, emulator_http, consented_in=None)
    if consented:
        consent = {"client_id": client_id, "directory": "contoso", "roles": ["Mail.Send"]}
        granted = await emulator_http.post(f"{stack.microsoft_url}/_emulator/admin-consent", json=consent)
        assert granted.status_code == 200 and "Mail.Send" in granted.json()["roles"], granted.text
    tenant_id, address = await app_only_tenant(admin, stack, "microsoft", "graph", client_id=client_id)
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": secret}
    )
    assert saved.status_code == 200, saved.text
    started = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
    assert started.status_code == 200 and started.json()["state"] == "succeeded", started.text
    return tenant_id, address, client_id


async def configuration_alert(admin, tenant_id: str, words: str, field: str = "remedy") -> None:
    async def raised() -> bool:
        listed = (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json()
        assert any(a["cause"] == "configuration_error" and words in (a[field] or "") for a in listed), listed
        return True

    await eventually(raised, what=f"a configuration alert saying {words!r}")


async def test_an_app_with_consent_sends_through_graph_with_its_app_token(
    stack, emulator_http, admin
) -> None:
    tenant_id, address, client_id = await graph_app(stack, emulator_http, admin, consented=True)
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, SCAN)
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    entry, message = await received(stack, emulator_http, job_id)
    assert entry["auth_mechanism"] == "GRAPH" and entry["auth_user"] == address
    assert message["From"] == address

    # The token Graph saw: the app's own (.default of Graph, the role Mail.Send), no user's.
    issued = (await emulator_http.get(f"{stack.microsoft_url}/_emulator/issued")).json()["access_tokens"]
    [token] = [t for t in issued if hashlib.sha256(t.encode()).hexdigest() == entry["token_sha256"]]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == GRAPH and claims["appid"] == client_id
    assert "Mail.Send" in claims["roles"] and "scp" not in claims


async def test_an_app_without_consent_fails_with_the_consent_to_grant(stack, emulator_http, admin) -> None:
    tenant_id, _, _ = await graph_app(stack, emulator_http, admin, consented=False)
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, SCAN)
        status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "configuration_error", status
    assert "Grant admin consent" in status["remedy"] and "Mail.Send" in status["remedy"]
    assert "ErrorAccessDenied" in status["smtp_reply"], status
    await configuration_alert(admin, tenant_id, "Grant admin consent")


async def test_an_application_access_policy_without_the_mailbox_is_a_setting_to_fix(
    stack, emulator_http, admin
) -> None:
    tenant_id, _, client_id = await graph_app(stack, emulator_http, admin, consented=True)
    # New-ApplicationAccessPolicy -AccessRight RestrictAccess, scoped to another mailbox.
    policy = {"app_id": client_id, "mailboxes": [f"reception@{tenant_id}.example"]}
    assert (
        await emulator_http.post(f"{stack.smtp_control_url}/_emulator/api/app-access-policy", json=policy)
    ).status_code == 200
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, SCAN)
        status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "configuration_error", status
    assert "AccessPolicy" in status["smtp_reply"], status
    assert "application access policy" in status["remedy"], status
    await configuration_alert(admin, tenant_id, "application access policy")


async def test_a_service_account_sends_through_the_gmail_api_once_the_admin_authorized_it(
    stack, emulator_http, admin, gmail, service_account
) -> None:
    tenant_id, address = await app_only_tenant(admin, stack, "google", "gmail_api")
    # The client id is not yet on the Workspace admin console's domain-wide delegation page.
    key = await service_account(f"{tenant_id}.example", scopes=[])
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"google_service_account": key}
    )
    assert saved.status_code == 200, saved.text
    async with device_panel(stack, tenant_id) as panel:
        refused_id = await submit(panel, SCAN)
        refused = await final_status(panel, refused_id)
        assert refused["status"] == "failed" and refused["reason_code"] == "configuration_error", refused
        # Google refuses the token itself: token-service's detail names what to authorize, and
        # it is the remedy the job and the alert give.
        authorize = f"authorizes client id {key['client_id']} for {GMAIL_SEND}"
        assert authorize in refused["detail"] and "Domain-wide delegation" in refused["detail"], refused
        assert authorize in refused["remedy"] and "Signing in again does not help" in refused["remedy"]
        await configuration_alert(admin, tenant_id, authorize)

        authorized = await emulator_http.post(
            f"{stack.google_url}/_emulator/service-accounts/delegation",
            json={"client_email": key["client_email"], "delegated_scopes": [GMAIL_SEND]},
        )
        assert authorized.status_code == 200, authorized.text
        job_id = await submit(panel, SCAN | {"subject": f"after delegation {uuid.uuid4().hex[:6]}"})
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    message_id = f"<{job_id}@fleetmail>"
    [entry] = (
        await emulator_http.get(f"{gmail.control_url}/_emulator/messages", params={"message_id": message_id})
    ).json()
    assert entry["auth_mechanism"] == "GMAIL_API" and entry["auth_user"] == address
    assert entry["mail_from"] == address
