"""Tokens for the mail API emulators, as a signed-in user gets them."""

from __future__ import annotations

import secrets

import httpx
from fleetmail_devkit.stack import DEMO_CLIENT_ID, Stack

from tests.utils.google import authorize, register

GRAPH = "https://graph.microsoft.com"
GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"


async def graph_token(stack: Stack, http: httpx.AsyncClient, user: str, permissions: str) -> str:
    """A user's delegated token for Graph `permissions` ("Mail.Send Mail.ReadWrite") or any
    whole scopes, by device code."""
    scope = " ".join(p if "/" in p else f"{GRAPH}/{p}" for p in permissions.split())
    flow = (
        await http.post(
            f"{stack.microsoft_url}/contoso/oauth2/v2.0/devicecode",
            data={"client_id": DEMO_CLIENT_ID, "scope": scope},
        )
    ).json()
    await http.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": flow["user_code"], "user": user},
    )
    redeemed = await http.post(
        f"{stack.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": DEMO_CLIENT_ID,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
        },
    )
    return str(redeemed.json()["access_token"])


async def gmail_token(stack: Stack, http: httpx.AsyncClient, user: str, scope: str = GMAIL_SEND) -> str:
    """A Google user's token for `scope`, by a browser sign-in."""
    client_id, secret = await register(stack, http)
    tokens = await authorize(stack, http, client_id, secret, user, secrets.token_urlsafe(40), scope)
    return str(tokens["access_token"])
