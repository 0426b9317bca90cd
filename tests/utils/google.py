"""Registering an app with the Google emulator and authorizing it as a user would."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
from fleetmail_devkit.stack import Stack

MAIL = "https://mail.google.com/"


REDIRECT = "http://127.0.0.1:1/callback"


async def register(emulators: Stack, http: httpx.AsyncClient, testing_mode: bool = False) -> tuple[str, str]:
    client_id, secret = f"{uuid.uuid4().hex[:8]}.apps.googleusercontent.com", secrets.token_urlsafe(12)
    await http.post(
        f"{emulators.google_url}/_emulator/apps",
        json={
            "client_id": client_id,
            "client_secret": secret,
            "testing_mode": testing_mode,
            "redirect_uris": [REDIRECT],
        },
    )
    return client_id, secret


async def authorize(
    emulators: Stack,
    http: httpx.AsyncClient,
    client_id: str,
    secret: str,
    user: str,
    verifier: str,
    scope: str = MAIL,
) -> dict:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    response = await http.get(
        f"{emulators.google_url}/o/oauth2/v2/auth",
        params={
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": f"{scope} openid email",
            "access_type": "offline",
            "prompt": "consent",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s1",
            "login_hint_user": user,
        },
    )
    assert response.status_code == 302
    query = parse_qs(urlparse(response.headers["location"]).query)
    assert query["state"] == ["s1"]
    token = await http.post(
        f"{emulators.google_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "client_secret": secret,
            "code_verifier": verifier,
        },
    )
    return token.json()
