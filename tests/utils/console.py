"""The administrator's console as a browser uses it, over plain HTTP: API keys of each role,
a signed-in session's cookie, the CSRF token a page carries."""

from __future__ import annotations

import re
import uuid

import httpx

COOKIE = "fleetmail_console"


async def new_api_key(admin: httpx.AsyncClient, role: str, tenant_ids: list[str] | None = None) -> dict:
    """A key made by the owner through the API: `key_id`, `key` (shown once), `name`."""
    body = {"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role, "tenant_ids": tenant_ids}
    created = await admin.post("/v1/admin/api-keys", json=body)
    assert created.status_code == 201, created.text
    return created.json()


def console_http(stack) -> httpx.AsyncClient:
    """A client for /console that sends this console's Origin, as a browser does on a POST."""
    return httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Origin": stack.gateway_url}, timeout=30, trust_env=False
    )


async def sign_in(http: httpx.AsyncClient, api_key: str) -> str:
    """Signs in at the console's form; returns the session cookie's value (which the client's
    cookie jar keeps too: a second sign-in on the same client ends this session, as in a
    browser — clear the jar to hold two sessions side by side)."""
    answer = await http.post("/console/sign-in", data={"api_key": api_key})
    assert answer.status_code == 303, answer.text
    return answer.cookies[COOKIE]


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)
