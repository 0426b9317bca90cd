"""The tenant pages in a real browser: a new tenant, OAuth 2.0 turned on after its preview,
[Acquire] through the device code approved at the Microsoft emulator (the page turns to
"Acquired" by itself), the revoked token's warning on [Information] and [Acquire] again
clearing it; what an operator and another tenant's fleet administrator may do there."""

from __future__ import annotations

import uuid

import httpx
from fleetmail_contracts.tokens import Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens
from playwright.async_api import Page, expect

from tests.browser.console import screenshot, sign_in
from tests.utils import eventually
from tests.utils.console import new_api_key
from tests.utils.tenants import new_tenant

VIEWPORT = {"width": 1280, "height": 800}
ACQUIRED_WITHIN_MS = 30_000
"""How long the page may take to show a sign-in the emulator approved (polled every 2 s)."""


async def acquire(
    page: Page, stack, emulator: httpx.AsyncClient, address: str, shot: str | None = None
) -> None:
    """[Acquire], the code approved at the emulator as the administrator, and the page turns
    to "Acquired" with no navigation."""
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )
    await page.get_by_test_id("acquire").click()
    code = page.get_by_test_id("user-code")
    await expect(code).to_be_visible()
    await expect(page.get_by_test_id("verification-uri")).to_contain_text("/devicelogin")
    await expect(page.get_by_test_id("acquisition-state")).to_have_attribute("data-state", "pending")
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.get_by_test_id("copy-code").click()
    await expect(page.get_by_test_id("copy-code")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == (await code.inner_text()).strip()
    await expect(page.get_by_test_id("copy-code")).to_have_text("Copy code")
    if shot:  # the page is long: the viewport, where the code is
        await screenshot(page, shot, full_page=False)
    approved = await emulator.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": (await code.inner_text()).strip(), "user": address},
    )
    assert approved.status_code == 200, approved.text
    await expect(page.get_by_test_id("admin-token-state")).to_have_text(
        "Acquired", timeout=ACQUIRED_WITHIN_MS
    )
    await expect(page.get_by_test_id("acquisition-state")).to_have_attribute("data-state", "succeeded")
    assert navigations == [], navigations


async def information_shows(page: Page, tenant_id: str, cause: str, current: bool) -> bool:
    await page.goto(f"/console/tenants/{tenant_id}/information")
    found = await page.locator(f'[data-testid="alert"][data-cause="{cause}"]').count()
    return (found > 0) == current


async def test_an_administrator_creates_a_tenant_turns_oauth_on_and_acquires(
    page: Page, stack, admin, emulator_http
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    address = f"admin@{tenant_id}.example"
    await page.set_viewport_size(VIEWPORT)
    await sign_in(page, stack.admin_api_key())
    await page.get_by_test_id("new-tenant").click()
    await page.get_by_label("Tenant id").fill(tenant_id)
    await page.get_by_test_id("create-tenant").click()
    await expect(page.get_by_test_id("tenant-id")).to_have_text(tenant_id)
    await expect(page.get_by_test_id("oauth-state")).to_have_text("OFF")
    await expect(page.get_by_test_id("provider")).to_have_text("Microsoft")
    await expect(page.get_by_test_id("admin-token-state")).to_have_text("Not acquired")

    # OAuth 2.0 ON without the address: refused at the field, what was typed kept.
    await page.locator("#oauth_enabled-on").check()
    await page.get_by_label("Display name").fill("Paris office")
    await page.get_by_test_id("review-changes").click()
    await expect(page.get_by_test_id("preview-refused")).to_contain_text("administrator")
    await expect(page.get_by_test_id("confirm-save")).to_have_count(0)
    await expect(page.get_by_test_id("error-administrator_address")).to_contain_text("administrator")

    await page.get_by_label("Administrator e-mail address").fill(address)
    await page.get_by_test_id("review-changes").click()
    await expect(page.get_by_test_id("consequences")).to_contain_text("without an administrator token")
    await expect(page.get_by_test_id("error-administrator_address")).to_have_count(0)
    await page.get_by_test_id("confirm-save").click()
    await expect(page.get_by_test_id("oauth-state")).to_have_text("ON")
    await expect(page.get_by_label("Display name")).to_have_value("Paris office")
    saved = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    assert saved["oauth_enabled"] and saved["administrator_address"] == address

    await acquire(page, stack, emulator_http, address, shot="console-acquire")

    # The token revoked at the provider: the next refresh finds it dead, [Information] says so.
    revoked = await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": address}
    )
    assert revoked.status_code == 200, revoked.text
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    await request_tokens(stack, principal, 1, force_refresh=True)
    cause = "administrator_reauthorization_required"
    await eventually(lambda: information_shows(page, tenant_id, cause, current=True), what="the warning")
    alert = page.locator(f'[data-testid="alert"][data-cause="{cause}"]')
    await expect(alert.get_by_test_id("alert-severity")).to_have_text("Critical")
    await expect(alert.get_by_test_id("alert-remedy")).not_to_be_empty()

    # The fleet overview says it too: the tenant's row, its token and its critical alert.
    await page.goto(f"/console/?q={tenant_id}")
    row = page.locator(f'[data-testid="tenant-row"][data-tenant="{tenant_id}"]')
    await expect(row.get_by_test_id("token-state")).to_contain_text("Re-authorization needed")
    await expect(row.get_by_test_id("alerts")).to_contain_text("1 critical")
    await row.get_by_role("link", name=tenant_id).click()
    await expect(page.get_by_test_id("admin-token-state")).to_have_text("Re-authorization needed")
    await acquire(page, stack, emulator_http, address)
    await page.goto(f"/console/?q={tenant_id}")
    await expect(row.get_by_test_id("token-state")).to_contain_text("Acquired")
    await expect(row.get_by_test_id("alerts")).not_to_contain_text("critical")
    await eventually(
        lambda: information_shows(page, tenant_id, cause, current=False), what="the warning to clear"
    )
    await expect(page.locator(f'[data-testid="resolved-alert"][data-cause="{cause}"]')).to_have_count(1)


async def test_an_operator_sees_the_tenant_page_with_no_action_and_a_forged_post_is_refused(
    page: Page, admin
) -> None:
    tenant_id, _ = await new_tenant(admin)
    operator = await new_api_key(admin, "operator", [tenant_id])
    await sign_in(page, operator["key"])
    await expect(page.get_by_test_id("new-tenant")).to_have_count(0)
    await page.goto(f"/console/tenants/{tenant_id}")
    await expect(page.get_by_test_id("oauth-state")).to_have_text("ON")
    await expect(page.get_by_label("Administrator e-mail address")).to_be_disabled()
    for action in ("review-changes", "acquire", "save-credentials", "confirm-save"):
        await expect(page.get_by_test_id(action)).to_have_count(0)

    csrf = await page.locator('input[name="csrf_token"]').first.input_value()
    forged = await page.request.post(
        f"/console/tenants/{tenant_id}/settings", form={"csrf_token": csrf, "oauth_enabled": "off"}
    )
    assert forged.status == 403 and "read-only" in await forged.text()
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()["oauth_enabled"] is True


async def test_a_fleet_administrator_cannot_open_another_tenants_pages(page: Page, admin) -> None:
    mine, _ = await new_tenant(admin)
    theirs, _ = await new_tenant(admin)
    fleet_admin = await new_api_key(admin, "fleet_admin", [mine])
    await sign_in(page, fleet_admin["key"])
    await expect(page.get_by_test_id("new-tenant")).to_have_count(0)
    for path in (f"/console/tenants/{theirs}", f"/console/tenants/{theirs}/information"):
        refused = await page.goto(path)
        assert refused is not None and refused.status == 403, path
        await expect(page.get_by_test_id("error-detail")).to_contain_text("no access")
    opened = await page.goto(f"/console/tenants/{mine}/information")
    assert opened is not None and opened.status == 200
    await expect(page.get_by_role("heading", name="Current")).to_be_visible()
