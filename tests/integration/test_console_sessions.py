"""The console's sessions and cross-site protection over HTTP, against the stack's gateway:
the cookie's flags, the session kept server-side (only its hash), expiry, a revoked key,
sign-out, the CSRF token and the origin check."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from pymongo import AsyncMongoClient

from tests.utils.console import COOKIE, console_http, csrf_token, new_api_key, sign_in
from tests.utils.tenants import new_tenant

SESSIONS = ("fleetmail_gateway", "console_sessions")


async def stored_session(stack, cookie: str) -> dict | None:
    client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    try:
        return await client[SESSIONS[0]][SESSIONS[1]].find_one(
            {"_id": hashlib.sha256(cookie.encode()).hexdigest()}
        )
    finally:
        await client.close()


def with_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={cookie}"}


async def signed_in_page(http: httpx.AsyncClient, cookie: str, path: str = "/console/") -> httpx.Response:
    return await http.get(path, headers=with_cookie(cookie))


async def test_sign_in_sets_a_strict_cookie_and_keeps_only_the_session_hash(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    async with console_http(stack) as http:
        answer = await http.post("/console/sign-in", data={"api_key": stack.admin_api_key()})
        assert answer.status_code == 303 and answer.headers["location"].endswith("/console/")
        set_cookie = answer.headers["set-cookie"]
        flags = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
        assert {"httponly", "path", "max-age", "samesite"} <= flags and "secure" not in flags
        assert "samesite=strict" in set_cookie.lower() and "path=/console" in set_cookie.lower()
        assert "max-age=28800" in set_cookie.lower()
        cookie = answer.cookies[COOKIE]

        overview = await signed_in_page(http, cookie)
        assert overview.status_code == 200 and tenant_id in overview.text
        assert "owner" in overview.text and "content-security-policy" in overview.headers

    stored = await stored_session(stack, cookie)
    assert stored is not None and stored["key_id"] == "owner"
    assert cookie not in repr(stored) and stack.admin_api_key() not in repr(stored)


async def test_a_request_forwarded_as_https_gets_a_secure_cookie(stack) -> None:
    https_origin = stack.gateway_url.replace("http://", "https://")
    async with console_http(stack) as http:
        answer = await http.post(
            "/console/sign-in",
            data={"api_key": stack.admin_api_key()},
            headers={"X-Forwarded-Proto": "https", "Origin": https_origin},
        )
    assert answer.status_code == 303, answer.text
    assert "secure" in {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}


async def test_a_wrong_key_gets_the_form_again_with_a_message_and_no_session(stack) -> None:
    async with console_http(stack) as http:
        answer = await http.post("/console/sign-in", data={"api_key": "fmk_nope_nope"})
    assert answer.status_code == 401
    assert "That key was not accepted" in answer.text and 'name="api_key"' in answer.text
    assert "set-cookie" not in answer.headers and "Traceback" not in answer.text


async def test_without_a_session_the_pages_send_to_the_sign_in_form(stack) -> None:
    async with console_http(stack) as http:
        for cookie in (None, "made-up-session-id"):
            headers = with_cookie(cookie) if cookie else {}
            answer = await http.get("/console/", headers=headers)
            assert answer.status_code == 303 and answer.headers["location"].endswith("/console/sign-in")
        root = await http.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/console/"


async def test_an_expired_session_is_refused_even_before_the_ttl_monitor_removes_it(stack) -> None:
    async with console_http(stack) as http:
        cookie = await sign_in(http, stack.admin_api_key())
        assert (await signed_in_page(http, cookie)).status_code == 200
        client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
        try:
            expired = datetime.now(UTC) - timedelta(seconds=1)
            sessions = client[SESSIONS[0]][SESSIONS[1]]
            digest = hashlib.sha256(cookie.encode()).hexdigest()
            await sessions.update_one({"_id": digest}, {"$set": {"expires_at": expired}})
            indexes = [index async for index in await sessions.list_indexes()]
        finally:
            await client.close()
        answer = await signed_in_page(http, cookie)
    assert answer.status_code == 303 and answer.headers["location"].endswith("/console/sign-in")
    assert any(index.get("expireAfterSeconds") == 0 and "expires_at" in index["key"] for index in indexes)


async def test_a_revoked_key_ends_its_sessions(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    key = await new_api_key(admin, "fleet_admin", [tenant_id])
    async with console_http(stack) as http:
        cookie = await sign_in(http, key["key"])
        assert tenant_id in (await signed_in_page(http, cookie)).text
        assert (await admin.delete(f"/v1/admin/api-keys/{key['key_id']}")).json() == {"deleted": True}
        answer = await signed_in_page(http, cookie)
    assert answer.status_code == 303 and answer.headers["location"].endswith("/console/sign-in")
    assert await stored_session(stack, cookie) is None


async def test_sign_out_deletes_the_session(stack) -> None:
    async with console_http(stack) as http:
        cookie = await sign_in(http, stack.admin_api_key())
        token = csrf_token((await signed_in_page(http, cookie)).text)
        out = await http.post("/console/sign-out", data={"csrf_token": token}, headers=with_cookie(cookie))
        assert out.status_code == 303 and out.headers["location"].endswith("/console/sign-in")
        assert f'{COOKIE}=""' in out.headers["set-cookie"]
        assert await stored_session(stack, cookie) is None
        assert (await signed_in_page(http, cookie)).status_code == 303


async def test_a_change_needs_the_session_csrf_token_and_this_origin(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    switch = f"/console/tenants/{tenant_id}/settings"
    async with console_http(stack) as http:
        cookie = await sign_in(http, stack.admin_api_key())
        token = csrf_token((await signed_in_page(http, cookie, f"/console/tenants/{tenant_id}")).text)
        refused = [
            await http.post(switch, data={"oauth_enabled": "off"}, headers=with_cookie(cookie)),
            await http.post(
                switch, data={"oauth_enabled": "off", "csrf_token": "forged"}, headers=with_cookie(cookie)
            ),
            await http.post(
                switch,
                data={"oauth_enabled": "off", "csrf_token": token},
                headers={**with_cookie(cookie), "Origin": "http://evil.example"},
            ),
            await http.post(
                switch,
                data={"oauth_enabled": "off", "csrf_token": token},
                headers={**with_cookie(cookie), "Origin": "", "Referer": "http://evil.example/page"},
            ),
        ]
        for answer in refused:
            assert answer.status_code == 403, answer.text
            assert "Cross-site request refused" in answer.text
        assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["oauth_enabled"] is True

        # htmx sends the token as a header (hx-headers on <body>)
        switched = await http.post(
            switch, data={"oauth_enabled": "off"}, headers={**with_cookie(cookie), "X-CSRF-Token": token}
        )
        assert switched.status_code == 303, switched.text
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["oauth_enabled"] is False


async def test_sign_in_is_refused_from_another_site_or_from_no_page(stack) -> None:
    async with console_http(stack) as http:
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}):
            answer = await http.post(
                "/console/sign-in", data={"api_key": stack.admin_api_key()}, headers=headers
            )
            assert answer.status_code == 403 and "set-cookie" not in answer.headers
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, trust_env=False) as bare:
        answer = await bare.post("/console/sign-in", data={"api_key": stack.admin_api_key()})
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
