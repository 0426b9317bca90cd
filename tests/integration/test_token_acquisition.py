"""Acquiring grants through job-gateway, as an administrator at a device would."""

from urllib.parse import parse_qs, urlparse

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import events, request_tokens

from tests.utils import eventually
from tests.utils.tenants import browser_sign_in, new_tenant, posted_form


async def test_microsoft_authorization_code_through_the_callback(stack, emulator_http, admin) -> None:
    tenant_id, address = await new_tenant(admin)
    started = (
        await admin.post(
            f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=authorization_code"
        )
    ).json()
    assert (
        started["flow"] == "authorization_code"
        and "code_challenge_method=S256" in started["authorization_url"]
    )
    landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
    assert landed.status_code == 200 and "You may close this window" in landed.text
    status = (
        await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}")
    ).json()
    assert status["state"] == "succeeded"
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    assert (await request_tokens(stack, principal, 1))[0].outcome is AccessTokenOutcome.GRANTED
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert [g["status"] for g in grants] == ["active"] and grants[0]["provider"] == "microsoft"


async def test_google_authorization_code_and_refresh_without_rotation(stack, emulator_http, admin) -> None:
    tenant_id, address = await new_tenant(admin, "google")
    refused = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=device_code")
    assert (
        refused.status_code == 409 and "device flow cannot carry the Gmail scope" in refused.json()["detail"]
    )
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    query = parse_qs(urlparse(started["authorization_url"]).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"] and "https://mail.google.com/" in query["scope"][0]
    landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
    assert landed.status_code == 200, landed.text
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    first = (await request_tokens(stack, principal, 1))[0]
    assert first.outcome is AccessTokenOutcome.GRANTED and first.provider == "google"
    forced = (await request_tokens(stack, principal, 1, force_refresh=True))[0]
    assert forced.outcome is AccessTokenOutcome.GRANTED and forced.access_token != first.access_token
    info = await emulator_http.get(
        f"{stack.google_url}/tokeninfo", params={"access_token": forced.access_token}
    )
    assert info.json()["email"] == address
    # Google keeps the refresh token: the refresh rotated nothing.
    [refreshed] = [
        e
        for e in await events(stack, "fleetmail.events.v1.tokens.refreshed")
        if e["principal"]["tenant_id"] == tenant_id
    ]
    assert refreshed["rotated"] is False
    # Revoked at Google: the next refresh finds out and says so.
    await emulator_http.post(f"{stack.google_url}/_emulator/grants/revoke", json={"user": address})
    dead = (await request_tokens(stack, principal, 1, force_refresh=True))[0]
    assert dead.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED


async def test_signing_in_with_the_wrong_account_is_refused_and_nothing_is_stored(
    stack, emulator_http, admin
) -> None:
    tenant_id, _ = await new_tenant(admin)
    started = (
        await admin.post(
            f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=authorization_code"
        )
    ).json()
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/settings", json={"next_sign_in": "intern@elsewhere.example"}
    )
    try:
        landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
    finally:
        await emulator_http.post(f"{stack.microsoft_url}/_emulator/settings", json={"next_sign_in": None})
    assert landed.status_code == 400
    assert (
        "signed in as intern@elsewhere.example" in landed.text and "sign in with that account" in landed.text
    )
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"] == []


async def test_a_sign_in_answer_is_used_once(stack, emulator_http, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    started = (
        await admin.post(
            f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=authorization_code"
        )
    ).json()
    page = await emulator_http.get(started["authorization_url"])
    action, fields = posted_form(page.text)
    async with httpx.AsyncClient(timeout=30) as browser:
        assert (await browser.post(action, data=fields)).status_code == 200
        replay = await browser.post(action, data=fields)
        forged = await browser.get(action, params={"state": "made-up", "code": "x"})
    assert replay.status_code == 400 and "already used or has expired" in replay.text
    assert forged.status_code == 400


async def test_device_code_sign_in_with_the_wrong_account(stack, emulator_http, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": started["user_code"], "user": "someone@else.example"},
    )

    async def finished() -> dict | None:
        status = (
            await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}")
        ).json()
        return status if status["state"] != "pending" else None

    status = await eventually(finished, within=20, what="the sign-in to end")
    assert status["state"] == "failed" and "signed in as someone@else.example" in status["detail"]
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"] == []
