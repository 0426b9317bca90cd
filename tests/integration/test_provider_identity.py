"""fleetmail against identity providers as strict as the real ones: users whose UPN is not
their mail address, configuration faults named as such, Google's granular consent, and the
device code flow of an app with a client secret."""

import uuid

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import device_panel, events, request_tokens

from tests.utils import eventually
from tests.utils.jobs import final_status, received, submit
from tests.utils.tenants import browser_sign_in, confidential_app, new_tenant


async def registered_app(stack, emulator: httpx.AsyncClient, **registration) -> str:
    client_id = f"app-{uuid.uuid4().hex[:8]}"
    answer = await emulator.post(
        f"{stack.microsoft_url}/_emulator/apps", json={"client_id": client_id, **registration}
    )
    assert answer.status_code == 200
    return client_id


async def tenant_of(admin: httpx.AsyncClient, stack, address: str, **identity) -> str:
    tenant_id = address.rpartition("@")[2].split(".")[0]
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": address,
            "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
            "identity": identity,
        },
    )
    assert created.status_code == 200, created.text
    return tenant_id


async def acquisition_as(
    admin: httpx.AsyncClient, emulator: httpx.AsyncClient, stack, tenant_id: str, user: str
) -> dict:
    """The administrator's device code sign-in, approved as `user`; its final status."""
    started = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
    assert started.status_code == 200, started.text
    await emulator.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": started.json()["user_code"], "user": user},
    )

    async def finished() -> dict | None:
        status = (
            await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{started.json()['acquisition_id']}")
        ).json()
        return status if status["state"] != "pending" else None

    return await eventually(finished, within=30, what="the sign-in to end")


async def test_a_user_whose_upn_is_not_their_mail_address_signs_in_and_sends(
    stack, emulator_http, admin
) -> None:
    """John signs in as jdoe@….onmicrosoft.com and sends as john.doe@…: his id token's
    `email` optional claim, vouched for by his directory (`xms_edov`), names the mailbox. An
    account elsewhere whose administrators set the same mail address, unvouched, is refused."""
    suffix = uuid.uuid4().hex[:8]
    upn, smtp = f"jdoe@u{suffix}.onmicrosoft.com", f"john.doe@u{suffix}.example"
    impostor = f"mallory@evil{suffix}.onmicrosoft.com"
    users = f"{stack.microsoft_url}/_emulator/users"
    await emulator_http.post(
        users, json={"upn": impostor, "primary_smtp": smtp, "email_domain_verified": False}
    )
    await emulator_http.post(users, json={"upn": upn, "primary_smtp": smtp})
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes", json={"address": smtp, "owner_upn": upn}
    )
    client_id = await registered_app(stack, emulator_http, optional_claims=["email", "xms_edov"])
    tenant_id = await tenant_of(admin, stack, smtp, client_id=client_id)

    refused = await acquisition_as(admin, emulator_http, stack, tenant_id, impostor)
    assert refused["state"] == "failed" and f"signed in as {impostor}" in refused["detail"], refused
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"] == []

    signed_in = await acquisition_as(admin, emulator_http, stack, tenant_id, upn)
    assert signed_in["state"] == "succeeded", signed_in
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, {"function": "scan_to_email", "to": ["someone@fabrikam.example"]})
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    entry, _ = await received(stack, emulator_http, job_id)
    assert entry["auth_user"] == smtp


async def test_without_a_trusted_mail_claim_the_refusal_names_the_fix(stack, emulator_http, admin) -> None:
    """Without the optional claim the id token cannot show that the UPN owns the mailbox:
    the sign-in is refused, and the refusal says which app registration setting fixes it."""
    suffix = uuid.uuid4().hex[:8]
    upn, smtp = f"jdoe@n{suffix}.onmicrosoft.com", f"john.doe@n{suffix}.example"
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/users", json={"upn": upn, "primary_smtp": smtp}
    )
    tenant_id = await tenant_of(admin, stack, smtp, client_id=await registered_app(stack, emulator_http))
    refused = await acquisition_as(admin, emulator_http, stack, tenant_id, upn)
    assert refused["state"] == "failed", refused
    assert "optional claims `email` and `xms_edov`" in refused["detail"]


async def test_configuration_faults_are_named_as_such_and_mfa_is_not_a_revocation(
    stack, emulator_http, admin
) -> None:
    consent_tenant, consent_admin = await new_tenant(admin)
    mfa_tenant, mfa_admin = await new_tenant(admin)
    for tenant_id, address in ((consent_tenant, consent_admin), (mfa_tenant, mfa_admin)):
        assert (await acquisition_as(admin, emulator_http, stack, tenant_id, address))["state"] == "succeeded"

    async def forced_refresh(tenant_id: str, address: str, code: int):
        await emulator_http.post(
            f"{stack.microsoft_url}/_emulator/faults",
            json={"error_code": code, "grant_type": "refresh_token"},
        )
        principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
        [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
        return reply

    consent = await forced_refresh(consent_tenant, consent_admin, 65001)
    assert consent.outcome is AccessTokenOutcome.CONFIGURATION_ERROR, consent
    assert "Grant admin consent" in (consent.detail or "") and "65001" in (consent.detail or "")
    # Missing consent does not kill the grant: once consent is granted, it works again.
    [grant] = (await admin.get(f"/v1/admin/tenants/{consent_tenant}/tokens")).json()["grants"]
    assert grant["status"] == "active"

    mfa = await forced_refresh(mfa_tenant, mfa_admin, 50076)
    assert mfa.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED
    assert "multi-factor" in (mfa.detail or "") and "not revoked" in (mfa.detail or "")
    [event] = [
        e
        for e in await events(stack, "fleetmail.events.v1.tokens.reauthorization_required")
        if e["principal"]["tenant_id"] == mfa_tenant
    ]
    assert event["error"] == "interaction_required" and event["error_codes"] == [50076]


async def test_a_google_sign_in_without_the_gmail_scope_fails_at_once(stack, emulator_http, admin) -> None:
    tenant_id, address = await new_tenant(admin, "google")
    await emulator_http.post(
        f"{stack.google_url}/_emulator/consent",
        json={"user": address, "unticked_scopes": ["https://mail.google.com/"]},
    )
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
    assert landed.status_code != 200 or "close this window" not in landed.text
    status = (
        await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}")
    ).json()
    assert status["state"] == "failed", status
    assert "https://mail.google.com/" in status["detail"] and "unticked" in status["detail"]
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"] == []


async def test_device_code_sign_in_with_a_client_secret(stack, emulator_http, admin) -> None:
    client_id, secret = await confidential_app(stack, emulator_http)
    address = f"admin@c{uuid.uuid4().hex[:8]}.example"
    tenant_id = await tenant_of(admin, stack, address, client_id=client_id)
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": secret}
    )
    assert saved.status_code == 200, saved.text
    status = await acquisition_as(admin, emulator_http, stack, tenant_id, address)
    assert status["state"] == "succeeded", status
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    [refreshed] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert refreshed.outcome is AccessTokenOutcome.GRANTED, refreshed.detail
