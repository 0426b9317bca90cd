"""The tenant pages' changes over HTTP, against the stack's gateway: every write route refuses
an operator's session and a request without the CSRF token, a fleet administrator cannot
create a tenant, a refusal is shown at its field with what was typed, credentials are
write-only, and a new tenant never replaces one that exists."""

from __future__ import annotations

import uuid

import httpx

from tests.utils import eventually
from tests.utils.console import COOKIE, console_http, csrf_token, new_api_key, sign_in
from tests.utils.tenants import new_tenant, tenant_with_device, user_signs_in


def write_routes(tenant_id: str) -> list[tuple[str, dict[str, str]]]:
    base = f"/console/tenants/{tenant_id}"
    return [
        (f"{base}/settings", {"oauth_enabled": "off"}),
        (f"{base}/settings/preview", {"oauth_enabled": "off"}),
        (f"{base}/credentials", {"smtp_password": "not-to-be-kept"}),
        (f"{base}/tokens/administrator/acquire", {}),
        (f"{base}/tokens/users/delete", {"address": f"jo@{tenant_id}.example"}),
        (f"{base}/tokens/users/delete-all", {}),
        (f"{base}/alerts/any-alert/acknowledge", {}),
    ]


async def session(http: httpx.AsyncClient, key: str, page: str) -> tuple[dict[str, str], str]:
    cookie = {"Cookie": f"{COOKIE}={await sign_in(http, key)}"}
    http.cookies.clear()  # several sessions side by side: each request names its own
    shown = await http.get(page, headers=cookie)
    assert shown.status_code == 200, shown.text
    return cookie, csrf_token(shown.text)


async def test_every_write_route_refuses_an_operator_and_a_request_without_the_token(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    before = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    operator = await new_api_key(admin, "operator", [tenant_id])
    async with console_http(stack) as http:
        as_operator, operator_token = await session(http, operator["key"], f"/console/tenants/{tenant_id}")
        as_owner, _ = await session(http, stack.admin_api_key(), f"/console/tenants/{tenant_id}")
        for path, form in write_routes(tenant_id):
            forged = await http.post(path, data={**form, "csrf_token": operator_token}, headers=as_operator)
            assert forged.status_code == 403 and "read-only" in forged.text, (path, forged.text)
            tokenless = await http.post(path, data=form, headers=as_owner)
            assert tokenless.status_code == 403, (path, tokenless.text)
            assert "Cross-site request refused" in tokenless.text, path
        created = await http.post(
            "/console/new-tenant",
            data={"tenant_id": "t-by-operator", "csrf_token": operator_token},
            headers=as_operator,
        )
        assert created.status_code == 403
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json() == before
    assert (await admin.get("/v1/admin/tenants/t-by-operator")).status_code == 404
    credentials = (await admin.get(f"/v1/admin/tenants/{tenant_id}/credentials")).json()
    assert credentials["smtp_password"] is False


async def test_a_fleet_administrator_creates_no_tenant_and_is_offered_none(stack, admin) -> None:
    mine, _ = await new_tenant(admin)
    fleet_admin = await new_api_key(admin, "fleet_admin", [mine])
    wanted = f"t-{uuid.uuid4().hex[:8]}"
    async with console_http(stack) as http:
        cookie, token = await session(http, fleet_admin["key"], "/console/")
        overview = await http.get("/console/", headers=cookie)
        assert "New tenant" not in overview.text
        assert (await http.get("/console/new-tenant", headers=cookie)).status_code == 403
        refused = await http.post(
            "/console/new-tenant", data={"tenant_id": wanted, "csrf_token": token}, headers=cookie
        )
        assert refused.status_code == 403
    assert (await admin.get(f"/v1/admin/tenants/{wanted}")).status_code == 404


async def test_a_new_tenant_has_the_device_defaults_and_never_replaces_one(stack, admin) -> None:
    existing, address = await new_tenant(admin)
    wanted = f"t-{uuid.uuid4().hex[:8]}"
    async with console_http(stack) as http:
        cookie, token = await session(http, stack.admin_api_key(), "/console/new-tenant")
        created = await http.post(
            "/console/new-tenant",
            data={"tenant_id": wanted, "display_name": "Lyon", "csrf_token": token},
            headers=cookie,
        )
        assert created.status_code == 303 and created.headers["location"].endswith(
            f"/console/tenants/{wanted}"
        )
        taken = await http.post(
            "/console/new-tenant", data={"tenant_id": existing, "csrf_token": token}, headers=cookie
        )
        assert taken.status_code == 409 and "exists already" in taken.text
        assert f'value="{existing}"' in taken.text
        bad = await http.post(
            "/console/new-tenant", data={"tenant_id": "Not An Id", "csrf_token": token}, headers=cookie
        )
        assert bad.status_code == 422 and 'data-testid="error-tenant_id"' in bad.text
    tenant = (await admin.get(f"/v1/admin/tenants/{wanted}")).json()
    assert (tenant["oauth_enabled"], tenant["provider"], tenant["display_name"]) == (
        False,
        "microsoft",
        "Lyon",
    )
    assert (await admin.get(f"/v1/admin/tenants/{existing}")).json()["administrator_address"] == address


async def test_a_refused_setting_is_shown_at_its_field_and_nothing_typed_is_lost(stack, admin) -> None:
    tenant_id, address = await new_tenant(admin)
    before = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    page = f"/console/tenants/{tenant_id}"
    typed = {"oauth_enabled": "on", "administrator_address": address, "display_name": "Typed name"}
    async with console_http(stack) as http:
        cookie, token = await session(http, stack.admin_api_key(), page)
        # The contract's refusal (a port out of range) and the use case's (a recipient list).
        for form, field in (
            ({"smtp_host": "mail.example.com", "smtp_port": "70000"}, "smtp_port"),
            ({"email_recipients": "a@example.com, b@example.com"}, "email_recipients"),
            ({"oauth_enabled": "on", "administrator_address": ""}, "administrator_address"),
        ):
            answer = await http.post(
                f"{page}/settings", data={**typed, **form, "csrf_token": token}, headers=cookie
            )
            assert answer.status_code == 422, answer.text
            assert f'data-testid="error-{field}"' in answer.text
            assert 'value="Typed name"' in answer.text and 'data-testid="settings-refused"' in answer.text
            preview = await http.post(
                f"{page}/settings/preview", data={**typed, **form, "csrf_token": token}, headers=cookie
            )
            assert preview.status_code == 422 and f'href="#{field}"' in preview.text
        assert (
            'value="mail.example.com"'
            in (
                await http.post(
                    f"{page}/settings",
                    data={**typed, "smtp_host": "mail.example.com", "smtp_port": "0", "csrf_token": token},
                    headers=cookie,
                )
            ).text
        )
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json() == before


async def test_credentials_are_write_only_through_the_apis_use_case(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    page = f"/console/tenants/{tenant_id}"
    secret = f"smtp-{uuid.uuid4().hex}"
    async with console_http(stack) as http:
        cookie, token = await session(http, stack.admin_api_key(), page)
        saved = await http.post(
            f"{page}/credentials",
            data={"smtp_username": "relay@example.com", "smtp_password": secret, "csrf_token": token},
            headers=cookie,
        )
        assert saved.status_code == 303, saved.text
        shown = (await http.get(page, headers=cookie)).text
        assert 'data-testid="set-smtp_password">set<' in shown and secret not in shown
        assert 'data-testid="set-microsoft_client_secret">not set<' in shown
        short = await http.post(
            f"{page}/credentials", data={"webhook_secret": "too-short", "csrf_token": token}, headers=cookie
        )
        assert short.status_code == 422 and 'data-testid="error-webhook_secret"' in short.text
        assert "too-short" not in short.text
    credentials = (await admin.get(f"/v1/admin/tenants/{tenant_id}/credentials")).json()
    assert credentials["smtp_password"] is True and credentials["smtp_username"] == "relay@example.com"
    assert credentials["webhook_secret"] is False


async def test_delete_removes_one_users_token_then_every_users(stack, admin, emulator_http) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    users = [f"jo@{tenant_id}.example", f"max@{tenant_id}.example"]
    for user in users:
        await user_signs_in(stack, emulator_http, device, user)
    page = f"/console/tenants/{tenant_id}"

    async def user_grants() -> list[str]:
        grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
        return sorted(g["principal"]["address"] for g in grants if g["principal"]["kind"] == "user")

    async with console_http(stack) as http:
        cookie, token = await session(http, stack.admin_api_key(), page)
        shown = (await http.get(page, headers=cookie)).text
        assert shown.count('data-testid="user-token"') == 2 and all(user in shown for user in users)
        one = await http.post(
            f"{page}/tokens/users/delete", data={"address": users[0], "csrf_token": token}, headers=cookie
        )
        assert one.status_code == 303, one.text
        assert await user_grants() == [users[1]]
        every = await http.post(f"{page}/tokens/users/delete-all", data={"csrf_token": token}, headers=cookie)
        assert every.status_code == 303, every.text
        assert await user_grants() == []
        assert 'data-testid="user-tokens-none"' in (await http.get(page, headers=cookie)).text


async def test_acknowledge_marks_the_alert_through_the_apis_use_case(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)  # OAuth 2.0 on, nobody signed in: the prompt

    async def prompt() -> dict | None:
        alerts = (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json()
        return next((a for a in alerts if a["cause"] == "administrator_not_signed_in"), None)

    alert = await eventually(prompt, what="the administrator's sign-in prompt")
    page = f"/console/tenants/{tenant_id}/information"
    async with console_http(stack) as http:
        cookie, token = await session(http, stack.admin_api_key(), page)
        shown = (await http.get(page, headers=cookie)).text
        assert alert["title"] in shown and 'data-testid="acknowledge"' in shown
        done = await http.post(
            f"/console/tenants/{tenant_id}/alerts/{alert['alert_id']}/acknowledge",
            data={"csrf_token": token},
            headers=cookie,
        )
        assert done.status_code == 303 and done.headers["location"].endswith(page)
        shown = (await http.get(page, headers=cookie)).text
        assert 'data-testid="alert-acknowledged"' in shown and 'data-testid="acknowledge"' not in shown
    assert (await prompt() or {}).get("state") == "acknowledged"


async def test_acquire_shows_the_sign_in_link_for_google_and_why_not_without_an_address(stack, admin) -> None:
    google, _ = await new_tenant(admin, provider="google")
    bare = f"t-{uuid.uuid4().hex[:8]}"
    async with console_http(stack) as http:
        cookie, token = await session(http, stack.admin_api_key(), f"/console/tenants/{google}")
        htmx = {**cookie, "HX-Request": "true", "X-CSRF-Token": token}
        started = await http.post(f"/console/tenants/{google}/tokens/administrator/acquire", headers=htmx)
        assert started.status_code == 200, started.text
        assert 'data-testid="sign-in-link"' in started.text and stack.google_url in started.text
        assert 'data-state="pending"' in started.text and 'hx-trigger="every 2s"' in started.text

        created = await http.post(
            "/console/new-tenant", data={"tenant_id": bare, "csrf_token": token}, headers=cookie
        )
        assert created.status_code == 303
        refused = await http.post(
            f"/console/tenants/{bare}/tokens/administrator/acquire",
            data={"csrf_token": token},
            headers=cookie,
        )
        assert refused.status_code == 409 and 'data-testid="acquire-refused"' in refused.text
        shown = await http.post(f"/console/tenants/{bare}/tokens/administrator/acquire", headers=htmx)
        assert shown.status_code == 200 and 'data-testid="acquire-refused"' in shown.text


async def test_a_fleet_administrator_changes_nothing_of_another_tenant(stack, admin) -> None:
    """Every write route of tenant B, with the session and CSRF token of A's administrator."""
    mine, _ = await new_tenant(admin)
    theirs, _ = await new_tenant(admin)
    before = (await admin.get(f"/v1/admin/tenants/{theirs}")).json()
    fleet_admin = await new_api_key(admin, "fleet_admin", [mine])
    async with console_http(stack) as http:
        cookie, token = await session(http, fleet_admin["key"], f"/console/tenants/{mine}")
        for path, form in write_routes(theirs):
            refused = await http.post(path, data={**form, "csrf_token": token}, headers=cookie)
            assert refused.status_code == 403 and theirs in refused.text, (path, refused.text)
        polled = await http.get(f"/console/tenants/{theirs}/acquisitions/any", headers=cookie)
        assert polled.status_code == 403
    assert (await admin.get(f"/v1/admin/tenants/{theirs}")).json() == before


async def test_bad_input_gets_a_page_that_says_why_never_a_server_error(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    async with console_http(stack) as http:
        # A file in a form is refused before it is written anywhere, even before sign-in.
        uploaded = await http.post(
            "/console/sign-in", data={"api_key": "x"}, files={"junk": ("a.bin", b"\0" * 300_000)}
        )
        assert 400 <= uploaded.status_code < 500, uploaded.text
        cookie, token = await session(http, stack.admin_api_key(), f"/console/tenants/{tenant_id}")
        for address in ("@", "x@" + "y" * 400):
            answer = await http.post(
                f"/console/tenants/{tenant_id}/tokens/users/delete",
                data={"address": address, "csrf_token": token},
                headers=cookie,
            )
            assert answer.status_code == 422 and "not an e-mail address" in answer.text, answer.text
        nested = await http.post(
            f"/console/tenants/{tenant_id}/credentials",
            data={"google_service_account": "[" * 50_000, "csrf_token": token},
            headers=cookie,
        )
        assert nested.status_code == 422 and "JSON key file" in nested.text, nested.text
