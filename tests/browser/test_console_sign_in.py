"""Signing in to the console in a real browser, and what each role may do there."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.console import sign_in
from tests.utils.console import COOKIE, new_api_key
from tests.utils.tenants import new_tenant


async def page_csrf_token(page: Page) -> str:
    token = await page.locator('input[name="csrf_token"]').first.input_value()
    assert token
    return token


async def test_an_owner_signs_in_and_sees_the_tenants(page: Page, stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    await sign_in(page, stack.admin_api_key())
    await expect(page.get_by_test_id("key-name")).to_have_text("owner")
    await expect(page.get_by_test_id("key-role")).to_have_text("owner")
    # The stack's other tests make tenants too: this one is found by its id.
    await page.get_by_label("Tenant id or name").fill(tenant_id)
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("link", name=tenant_id)).to_be_visible()

    await page.get_by_role("link", name=tenant_id).click()
    await expect(page.get_by_test_id("tenant-id")).to_have_text(tenant_id)
    await expect(page.get_by_test_id("oauth-state")).to_have_text("ON")
    await page.locator("#oauth_enabled-off").check()
    await page.get_by_test_id("review-changes").click()
    await expect(page.get_by_test_id("consequences")).to_contain_text("OAuth 2.0 goes OFF")
    await page.get_by_test_id("confirm-save").click()
    await expect(page.get_by_test_id("oauth-state")).to_have_text("OFF")
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["oauth_enabled"] is False


async def test_a_wrong_key_is_told_so_on_the_form(page: Page) -> None:
    await page.goto("/console/")
    assert page.url.endswith("/console/sign-in")
    await page.get_by_label("API key").fill("fmk_nope_nope")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("sign-in-error")).to_contain_text("not accepted")
    await expect(page.get_by_label("API key")).to_be_visible()


async def test_sign_out_returns_to_the_form_and_the_old_cookie_is_dead(page: Page, stack) -> None:
    await sign_in(page, stack.admin_api_key())
    [old] = [cookie for cookie in await page.context.cookies() if cookie["name"] == COOKIE]
    assert old["httpOnly"] and old["sameSite"] == "Strict" and old["path"] == "/console"

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not [c for c in await page.context.cookies() if c["name"] == COOKIE]

    await page.context.add_cookies([old])
    await page.goto("/console/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_an_operator_is_offered_no_action_and_a_forged_post_is_refused(
    page: Page, stack, admin
) -> None:
    tenant_id, _ = await new_tenant(admin)
    operator = await new_api_key(admin, "operator", [tenant_id])
    await sign_in(page, operator["key"])
    await expect(page.get_by_test_id("key-role")).to_have_text("operator")
    await page.goto(f"/console/tenants/{tenant_id}")
    await expect(page.get_by_test_id("oauth-state")).to_have_text("ON")
    await expect(page.get_by_test_id("review-changes")).to_have_count(0)

    # The operator's own session and a valid CSRF token: the server still refuses the change.
    forged = await page.request.post(
        f"/console/tenants/{tenant_id}/settings",
        form={"oauth_enabled": "off", "csrf_token": await page_csrf_token(page)},
    )
    assert forged.status == 403 and "read-only" in await forged.text()
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["oauth_enabled"] is True


async def test_a_post_without_the_csrf_token_is_refused(page: Page, stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    await sign_in(page, stack.admin_api_key())
    refused = await page.request.post(f"/console/tenants/{tenant_id}/settings", form={"oauth_enabled": "off"})
    assert refused.status == 403 and "Cross-site request refused" in await refused.text()
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["oauth_enabled"] is True


async def test_a_fleet_administrator_sees_only_its_tenants(page: Page, stack, admin) -> None:
    mine, _ = await new_tenant(admin)
    theirs, _ = await new_tenant(admin)
    fleet_admin = await new_api_key(admin, "fleet_admin", [mine])
    await sign_in(page, fleet_admin["key"])
    await expect(page.get_by_test_id("key-name")).to_have_text(fleet_admin["name"])
    await expect(page.get_by_role("link", name=mine)).to_be_visible()
    await expect(page.get_by_role("link", name=theirs)).to_have_count(0)

    refused = await page.goto(f"/console/tenants/{theirs}")
    assert refused is not None and refused.status == 403
    await expect(page.get_by_test_id("error-detail")).to_contain_text("no access")
    await expect(page.get_by_test_id("tenant-id")).to_have_count(0)
