"""App-only grants: Microsoft client credentials (SMTP.SendAsApp) and a Google service account
with domain-wide delegation — no user consent that can lapse. The app's secrets are stored
encrypted through job-gateway's credentials endpoint and never come back out."""

import uuid

from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import device_panel, request_tokens

from tests.utils import eventually
from tests.utils.jobs import final_status, received, submit
from tests.utils.tenants import app_only_tenant, confidential_app, stored_documents


def principal_of(tenant_id: str, address: str) -> Principal:
    return Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)


async def test_microsoft_client_credentials_send_with_no_sign_in(stack, emulator_http, admin) -> None:
    client_id, secret = await confidential_app(stack, emulator_http)
    tenant_id, address = await app_only_tenant(admin, stack, "microsoft", client_id=client_id)
    # Exchange lets the app's service principal into this mailbox only (Add-MailboxPermission).
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes", json={"address": address, "app_access": [client_id]}
    )

    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": secret}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["microsoft_client_secret"] is True and secret not in saved.text
    assert secret not in (await admin.get(f"/v1/admin/tenants/{tenant_id}/credentials")).text

    # [Acquire] on an app-only tenant succeeds at once: nobody has to sign in.
    started = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
    assert started.status_code == 200, started.text
    assert started.json()["flow"] == "app_only" and started.json()["state"] == "succeeded"
    [grant] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert grant["flow"] == "app_only" and grant["status"] == "active" and grant["predicted_death_at"] is None

    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, {"function": "scan_to_email", "to": ["someone@fabrikam.example"]})
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    entry, _ = await received(stack, emulator_http, job_id)
    assert entry["auth_mechanism"] == "XOAUTH2" and entry["auth_user"] == address

    # A forced refresh reaches Entra again (MSAL's own cached app token is dropped first).
    [again] = await request_tokens(stack, principal_of(tenant_id, address), 1, force_refresh=True)
    assert again.outcome is AccessTokenOutcome.GRANTED, again.detail

    stored = await stored_documents(stack, tenant_id)
    assert secret not in stored
    issued = (await emulator_http.get(f"{stack.microsoft_url}/_emulator/issued")).json()["access_tokens"]
    assert not any(token in stored for token in issued[-5:])


async def test_a_wrong_client_secret_is_reported_and_a_corrected_one_works(
    stack, emulator_http, admin
) -> None:
    client_id, secret = await confidential_app(stack, emulator_http)
    tenant_id, address = await app_only_tenant(admin, stack, "microsoft", client_id=client_id)
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)

    # A missing or refused app secret is a setting to fix, not a sign-in to repeat.
    [missing] = await request_tokens(stack, principal, 1)
    assert missing.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "no Microsoft client secret" in (missing.detail or "")
    assert "microsoft_client_secret in the tenant's credentials" in (missing.detail or "")

    await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": "wrong"})
    [refused] = await request_tokens(stack, principal, 1)
    assert refused.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "invalid_client" in (refused.detail or "") and "7000215" in (refused.detail or "")
    assert "microsoft_client_secret" in (refused.detail or "")

    await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": secret})
    [granted] = await request_tokens(stack, principal, 1)
    assert granted.outcome is AccessTokenOutcome.GRANTED


async def test_a_tenant_that_is_not_app_only_cannot_acquire_app_only(stack, admin) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": f"a@{tenant_id}.example",
        },
    )
    refused = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=app_only")
    assert refused.status_code == 409 and "identity.app_only" in refused.json()["detail"]


async def test_google_service_account_acts_for_workspace_users(
    stack, emulator_http, admin, service_account
) -> None:
    tenant_id, _ = await app_only_tenant(admin, stack, "google")
    key = await service_account(f"{tenant_id}.example")
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"google_service_account": key}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["google_service_account_email"] == key["client_email"]
    assert key["private_key"] not in saved.text

    user = Principal(
        tenant_id=tenant_id, kind=PrincipalKind.USER, address=f"scanner.user@{tenant_id}.example"
    )
    [reply] = await request_tokens(stack, user, 1)
    assert reply.outcome is AccessTokenOutcome.GRANTED and reply.provider == "google"
    info = (
        await emulator_http.get(f"{stack.google_url}/tokeninfo", params={"access_token": reply.access_token})
    ).json()
    assert info["email"] == user.address and "https://mail.google.com/" in info["scope"]

    # A user outside the tenant's mail domains: refused before Google is asked, and the
    # answer says why.
    outsider = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address="someone@elsewhere.example")
    [refused] = await request_tokens(stack, outsider, 1)
    assert refused.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "not in the mail domains" in (refused.detail or "")

    stored = await stored_documents(stack, tenant_id)
    assert key["private_key"].splitlines()[1] not in stored and reply.access_token not in stored


async def test_google_delegation_without_the_gmail_scope_is_refused(stack, admin, service_account) -> None:
    tenant_id, address = await app_only_tenant(admin, stack, "google")
    key = await service_account(f"{tenant_id}.example", scopes=["https://www.googleapis.com/auth/calendar"])
    await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"google_service_account": key})
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    [refused] = await request_tokens(stack, principal, 1)
    assert refused.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    assert "unauthorized_client" in (refused.detail or "")


async def test_a_malformed_service_account_key_is_refused_with_a_clear_error(stack, admin) -> None:
    tenant_id, _ = await app_only_tenant(admin, stack, "google")
    refused = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials",
        json={"google_service_account": {"type": "authorized_user", "client_id": "x"}},
    )
    assert refused.status_code == 422
    assert (
        refused.json()["type"].endswith("credentials-invalid")
        and "service account" in refused.json()["detail"]
    )


async def test_an_app_without_admin_consent_is_a_configuration_alert_not_a_sign_in(
    stack, emulator_http, admin
) -> None:
    """Entra issues the app-only token before admin consent too, without SMTP.SendAsApp, and
    Exchange refuses it: the job fails as a setting to fix (admin consent), never as a grant
    to acquire again, and the tenant's configuration alert says what to grant."""
    client_id, secret = await confidential_app(stack, emulator_http, consented_in=None)
    tenant_id, address = await app_only_tenant(admin, stack, "microsoft", client_id=client_id)
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes", json={"address": address, "app_access": [client_id]}
    )
    await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": secret})
    started = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
    assert started.json()["state"] == "succeeded", started.text

    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, {"function": "scan_to_email", "to": ["someone@fabrikam.example"]})
        status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "configuration_error", status
    assert "Grant admin consent" in status["remedy"] and "SMTP.SendAsApp" in status["remedy"]
    assert "Acquire" not in status["remedy"] and status["smtp_reply"].startswith("535 5.7.3")

    async def configuration_alert() -> bool:
        listed = (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json()
        return any(
            a["cause"] == "configuration_error" and "Grant admin consent" in a["remedy"] for a in listed
        )

    await eventually(configuration_alert)
