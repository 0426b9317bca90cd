"""The Microsoft emulator, driven by the real MSAL Python, as token-service drives it."""

import re
import uuid

import httpx
import msal
import pytest
import requests
from fleetmail_devkit.stack import Stack

SMTP_SCOPE = ["https://outlook.office.com/SMTP.Send"]


def msal_app(emulators: Stack, client_id: str, directory: str = "contoso") -> msal.PublicClientApplication:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulators.ca_file)
    return msal.PublicClientApplication(
        client_id,
        authority=f"{emulators.microsoft_url}/{directory}",
        instance_discovery=False,
        http_client=session,
    )


@pytest.fixture
async def app_and_user(
    emulators: Stack, emulator_http: httpx.AsyncClient
) -> tuple[msal.PublicClientApplication, str]:
    client_id = f"test-{uuid.uuid4().hex[:8]}"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/apps",
        json={
            "client_id": client_id,
            "redirect_uris": ["http://127.0.0.1:1/oauth/callback", "http://127.0.0.1:1/cb"],
        },
    )
    return msal_app(emulators, client_id), f"user-{uuid.uuid4().hex[:6]}@contoso.example"


async def sign_in(
    emulators: Stack, http: httpx.AsyncClient, app: msal.PublicClientApplication, user: str
) -> dict:
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    assert flow["interval"] == 5 and flow["expires_in"] == 900
    pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)
    assert pending["error"] == "authorization_pending"
    approved = await http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": flow["user_code"], "user": user},
    )
    assert approved.status_code == 200
    flow["_last_poll"] = 0  # the test does not wait out the interval; MSAL only warns
    with pytest.warns(UserWarning, match="too soon"):
        return app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)


async def test_device_code_flow_issues_signed_tokens(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    result = await sign_in(emulators, emulator_http, app, user)
    assert result["id_token_claims"]["preferred_username"] == user
    assert result["refresh_token"] and result["access_token"].count(".") == 2


async def test_the_id_tokens_tid_is_the_directory_signed_in_to(
    emulators, emulator_http, app_and_user
) -> None:
    """As Entra: a directory named by id is that id; `organizations` signs a work account in
    to its home directory, so two companies' people carry two different tids."""
    app, user = app_and_user
    directory = str(uuid.uuid4())
    by_id = msal_app(emulators, app.client_id, directory)
    assert (await sign_in(emulators, emulator_http, by_id, user))["id_token_claims"]["tid"] == directory
    anywhere = msal_app(emulators, app.client_id, "organizations")
    contoso = (await sign_in(emulators, emulator_http, anywhere, user))["id_token_claims"]["tid"]
    fabrikam_user = f"user-{uuid.uuid4().hex[:6]}@fabrikam.example"
    fabrikam = (await sign_in(emulators, emulator_http, anywhere, fabrikam_user))["id_token_claims"]["tid"]
    assert uuid.UUID(contoso) and uuid.UUID(fabrikam) and contoso != fabrikam


async def test_refresh_rotates_and_the_old_token_still_works(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    first = await sign_in(emulators, emulator_http, app, user)
    second = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=SMTP_SCOPE)
    assert second["refresh_token"] != first["refresh_token"]
    again = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=SMTP_SCOPE)
    assert "access_token" in again


async def test_revoked_and_inactive_grants(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    tokens = await sign_in(emulators, emulator_http, app, user)
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/grants/age", json={"user": user, "days": 91}
    )
    aged = app.acquire_token_by_refresh_token(tokens["refresh_token"], scopes=SMTP_SCOPE)
    assert aged["error"] == "invalid_grant" and aged["error_codes"] == [700082]
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert key in aged
    # MSAL caches an identical 400 for 60 s, so the revocation is checked on a new grant.
    fresh = await sign_in(emulators, emulator_http, app, user)
    await emulator_http.post(f"{emulators.microsoft_url}/_emulator/grants/revoke", json={"user": user})
    revoked = app.acquire_token_by_refresh_token(fresh["refresh_token"], scopes=SMTP_SCOPE)
    assert revoked["error"] == "invalid_grant" and revoked["error_codes"] == [50173]


async def test_throttling_and_call_counts(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    tokens = await sign_in(emulators, emulator_http, app, user)
    before = (await emulator_http.get(f"{emulators.microsoft_url}/_emulator/calls")).json()["token"]
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/faults", json={"status": 429, "count": 1, "retry_after_s": 7}
    )
    response = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
        },
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    after = (await emulator_http.get(f"{emulators.microsoft_url}/_emulator/calls")).json()["token"]
    assert after == before + 1


async def test_a_fault_for_one_grant_type_is_not_taken_by_another(
    emulators, emulator_http, app_and_user
) -> None:
    app, user = app_and_user
    tokens = await sign_in(emulators, emulator_http, app, user)
    token_url = f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/faults",
        json={"status": 503, "count": 1, "grant_type": "refresh_token"},
    )
    # A device-code poll (a sign-in some other test left pending) passes the fault by ...
    poll = await emulator_http.post(
        token_url,
        data={
            "client_id": app.client_id,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": "no-such-code",
        },
    )
    assert poll.status_code == 400
    # ... and the refresh it was meant for gets it, once.
    refresh = {
        "client_id": app.client_id,
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
    }
    assert (await emulator_http.post(token_url, data=refresh)).status_code == 503
    assert (await emulator_http.post(token_url, data=refresh)).status_code == 200


async def test_scope_mixing_and_unknown_apps_are_refused(emulators, emulator_http) -> None:
    mixed = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
        data={
            "client_id": "fleetmail-demo-client",
            "scope": "https://graph.microsoft.com/Mail.Send https://outlook.office.com/SMTP.Send",
        },
    )
    assert mixed.status_code == 400 and mixed.json()["error_codes"] == [70011]
    unknown = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
        data={"client_id": "nobody", "scope": "openid"},
    )
    assert unknown.json()["error_codes"] == [700016]


def posted_form(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))


async def test_authorization_code_with_pkce_through_msal(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE,
        redirect_uri="http://127.0.0.1:1/oauth/callback",
        login_hint=user,
        response_mode="form_post",
    )
    assert flow["code_verifier"] and "code_challenge_method=S256" in flow["auth_uri"]
    page = await emulator_http.get(flow["auth_uri"])
    assert 'action="http://127.0.0.1:1/oauth/callback"' in page.text
    query = posted_form(page.text)
    result = app.acquire_token_by_auth_code_flow(flow, query)
    assert result["id_token_claims"]["preferred_username"] == user and result["refresh_token"]
    replay = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": "http://127.0.0.1:1/oauth/callback",
            "code_verifier": flow["code_verifier"],
        },
    )
    assert replay.json()["error_codes"] == [54005]


async def test_pkce_verifier_must_match(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE, redirect_uri="http://127.0.0.1:1/cb", login_hint=user, response_mode="form_post"
    )
    code = posted_form((await emulator_http.get(flow["auth_uri"])).text)["code"]
    wrong = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:1/cb",
            "code_verifier": "x" * 43,
        },
    )
    assert wrong.status_code == 400 and wrong.json()["error_codes"] == [50148]


async def test_declined_device_code(emulators, emulator_http, app_and_user) -> None:
    app, _ = app_and_user
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/decline", json={"user_code": flow["user_code"]}
    )
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)
    assert result["error"] == "authorization_declined"


async def test_an_unregistered_redirect_uri_is_refused(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE, redirect_uri="https://attacker.example/cb", login_hint=user, response_mode="form_post"
    )
    page = await emulator_http.get(flow["auth_uri"])
    assert page.status_code == 400 and "AADSTS50011" in page.text
