"""The Google emulator, driven over HTTP and by google-auth, as token-service will drive it."""

import base64
import hashlib
import uuid
from urllib.parse import parse_qs, urlparse

import google.auth.transport.requests
import pytest
import requests
from fleetmail_devkit.stack import Stack
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials

from tests.utils.google import MAIL, REDIRECT, authorize, register


def google_request(emulators: Stack) -> google.auth.transport.requests.Request:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulators.ca_file)
    return google.auth.transport.requests.Request(session)


async def test_pkce_is_enforced(emulators, emulator_http) -> None:
    client_id, secret = await register(emulators, emulator_http)
    verifier = "w" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    response = await emulator_http.get(
        f"{emulators.google_url}/o/oauth2/v2/auth",
        params={
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": MAIL,
            "access_type": "offline",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint_user": "a@gmail.example",
        },
    )
    code = parse_qs(urlparse(response.headers["location"]).query)["code"][0]
    wrong = await emulator_http.post(
        f"{emulators.google_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "client_secret": secret,
            "code_verifier": "x" * 50,
        },
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


async def test_refresh_without_rotation_through_google_auth(emulators, emulator_http) -> None:
    client_id, secret = await register(emulators, emulator_http)
    tokens = await authorize(emulators, emulator_http, client_id, secret, "b@gmail.example", "v" * 50)
    credentials = Credentials(
        None,
        refresh_token=tokens["refresh_token"],
        token_uri=f"{emulators.google_url}/token",
        client_id=client_id,
        client_secret=secret,
        scopes=[MAIL],
    )
    credentials.refresh(google_request(emulators))
    assert credentials.token.startswith("ya29.") and credentials.refresh_token == tokens["refresh_token"]
    info = (
        await emulator_http.get(
            f"{emulators.google_url}/tokeninfo", params={"access_token": credentials.token}
        )
    ).json()
    assert info["email"] == "b@gmail.example" and MAIL in info["scope"]


def refreshed(emulators: Stack, client_id: str, secret: str, refresh_token: str) -> Credentials:
    """A refresh through google-auth, as token-service makes it; raises `RefreshError`."""
    credentials = Credentials(
        None,
        refresh_token=refresh_token,
        token_uri=f"{emulators.google_url}/token",
        client_id=client_id,
        client_secret=secret,
        scopes=[MAIL],
    )
    credentials.refresh(google_request(emulators))
    return credentials


def assert_dead(emulators: Stack, client_id: str, secret: str, refresh_token: str) -> None:
    with pytest.raises(RefreshError, match="invalid_grant") as caught:
        refreshed(emulators, client_id, secret, refresh_token)
    assert caught.value.retryable is False


async def test_revoked_and_testing_mode_grants_die(emulators, emulator_http) -> None:
    # A revoked grant dies at once, whatever the app's publishing status.
    client_id, secret = await register(emulators, emulator_http)
    revoked_user = f"revoked-{uuid.uuid4().hex[:6]}@gmail.example"
    revoked = await authorize(emulators, emulator_http, client_id, secret, revoked_user, "v" * 50)
    assert refreshed(emulators, client_id, secret, revoked["refresh_token"]).token
    await emulator_http.post(f"{emulators.google_url}/_emulator/grants/revoke", json={"user": revoked_user})
    assert_dead(emulators, client_id, secret, revoked["refresh_token"])

    # An app in "Testing" status: the grant dies seven days after consent, however often it
    # is used; the same age kills nothing for a published app.
    testing_id, testing_secret = await register(emulators, emulator_http, testing_mode=True)
    tester = f"tester-{uuid.uuid4().hex[:6]}@gmail.example"
    publisher = f"publisher-{uuid.uuid4().hex[:6]}@gmail.example"
    testing = await authorize(emulators, emulator_http, testing_id, testing_secret, tester, "v" * 50)
    published = await authorize(emulators, emulator_http, client_id, secret, publisher, "w" * 50)

    async def age(days: int) -> None:
        for user in (tester, publisher):
            aged = await emulator_http.post(
                f"{emulators.google_url}/_emulator/grants/age", json={"user": user, "days": days}
            )
            assert aged.json() == {"aged": 1}

    await age(6)
    assert refreshed(emulators, testing_id, testing_secret, testing["refresh_token"]).token
    assert refreshed(emulators, client_id, secret, published["refresh_token"]).token
    await age(2)
    assert_dead(emulators, testing_id, testing_secret, testing["refresh_token"])
    assert refreshed(emulators, client_id, secret, published["refresh_token"]).token


async def test_device_flow_refuses_the_mail_scope(emulators, emulator_http) -> None:
    response = await emulator_http.post(
        f"{emulators.google_url}/device/code", data={"client_id": "x", "scope": MAIL}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


async def test_granular_consent_says_what_was_granted(emulators, emulator_http) -> None:
    """A user may untick the Gmail scope; the token response's `scope` tells."""
    client_id, secret = await register(emulators, emulator_http)
    user = f"g-{uuid.uuid4().hex[:6]}@gmail.example"
    await emulator_http.post(
        f"{emulators.google_url}/_emulator/consent", json={"user": user, "unticked_scopes": [MAIL]}
    )
    tokens = await authorize(emulators, emulator_http, client_id, secret, user, "u" * 50)
    assert tokens["scope"].split() == ["openid", "email"]
    info = await emulator_http.get(
        f"{emulators.google_url}/tokeninfo", params={"access_token": tokens["access_token"]}
    )
    assert MAIL not in info.json()["scope"].split()


async def test_revoking_an_access_token_revokes_its_refresh_token(emulators, emulator_http) -> None:
    client_id, secret = await register(emulators, emulator_http)
    tokens = await authorize(emulators, emulator_http, client_id, secret, "r@gmail.example", "q" * 50)
    revoked = await emulator_http.post(
        f"{emulators.google_url}/revoke", data={"token": tokens["access_token"]}
    )
    assert revoked.status_code == 200
    with pytest.raises(RefreshError, match="invalid_grant"):
        refreshed(emulators, client_id, secret, tokens["refresh_token"])


async def test_past_the_live_refresh_token_limit_the_oldest_stops_working(emulators, emulator_http) -> None:
    client_id, secret = f"{uuid.uuid4().hex[:8]}.apps.googleusercontent.com", "limit-secret"
    await emulator_http.post(
        f"{emulators.google_url}/_emulator/apps",
        json={
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": [REDIRECT],
            "refresh_token_limit": 2,
        },
    )
    user = f"l-{uuid.uuid4().hex[:6]}@gmail.example"
    first, second, third = [
        (await authorize(emulators, emulator_http, client_id, secret, user, verifier * 50))["refresh_token"]
        for verifier in "abc"
    ]
    with pytest.raises(RefreshError, match="invalid_grant"):
        refreshed(emulators, client_id, secret, first)
    for live in (second, third):
        assert refreshed(emulators, client_id, secret, live).token
