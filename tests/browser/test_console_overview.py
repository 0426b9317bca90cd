"""The fleet overview in a real browser: each tenant's administrator token in the device's
words, its alerts and devices; filtered by token state, sorted by a column, each row leading
to the tenant's page."""

from __future__ import annotations

import uuid

from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant
from playwright.async_api import Page, expect

from tests.browser.console import screenshot, sign_in
from tests.utils import eventually
from tests.utils.tenants import new_tenant

VIEWPORT = {"width": 1280, "height": 800}


async def named(admin, tenant_id: str, name: str, **changes: object) -> None:
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}", json={**settings, "display_name": name, **changes}
    )
    assert saved.status_code == 200, saved.text


async def test_the_overview_shows_each_tenants_token_filters_and_sorts(
    page: Page, stack, admin, emulator_http
) -> None:
    tag = uuid.uuid4().hex[:6]
    acquired = (await tenant_with_administrator_grant(stack, emulator_http)).tenant_id
    await named(admin, acquired, f"Paris office {tag}")
    for _ in range(2):
        await register_device(stack, acquired)
    waiting, _ = await new_tenant(admin)  # OAuth 2.0 on, nobody signed in yet
    await named(admin, waiting, f"Lyon branch {tag}")
    off, _ = await new_tenant(admin)
    await named(admin, off, f"Nice warehouse {tag}", oauth_enabled=False)

    await page.set_viewport_size(VIEWPORT)
    await sign_in(page, stack.admin_api_key())
    await page.get_by_label("Tenant id or name").fill(tag)
    await page.get_by_role("button", name="Filter").click()
    rows = page.get_by_test_id("tenant-row")
    await expect(rows).to_have_count(3)

    def row(tenant_id: str):
        return page.locator(f'[data-testid="tenant-row"][data-tenant="{tenant_id}"]')

    await expect(row(acquired).get_by_test_id("token-state")).to_contain_text("Acquired")
    await expect(row(acquired)).to_contain_text("days left")
    await expect(row(waiting).get_by_test_id("token-state")).to_contain_text("Not acquired")

    # OAuth on with nobody signed in: the devices' prompt is an alert, and the row needs attention.
    async def prompted() -> dict:
        [alert] = (await admin.get(f"/v1/admin/tenants/{waiting}/alerts")).json()
        return alert

    alert = await eventually(prompted, within=60, what="the administrator's prompt")
    await page.reload()
    await expect(row(waiting).get_by_test_id("alerts")).to_contain_text(f"1 {alert['severity']}")
    await expect(row(waiting)).to_have_class("attention")
    await screenshot(page, "console-overview", full_page=False)

    # Sorted by devices, the largest first; filtered to tokens nobody has acquired.
    await page.get_by_role("link", name="Devices").click()
    await expect(rows.first).to_have_attribute("data-tenant", acquired)
    await page.get_by_label("Not acquired").check()
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)  # Lyon, and Nice (OAuth off: no token either)
    await expect(row(acquired)).to_have_count(0)
    await row(waiting).get_by_role("link", name=waiting).click()
    await expect(page.get_by_test_id("tenant-id")).to_have_text(waiting)


async def focused_text(page: Page) -> str:
    return await page.evaluate("(document.activeElement && document.activeElement.textContent || '').trim()")


async def test_on_a_tablet_with_the_keyboard_alone_the_overview_leads_to_a_tenant(
    page: Page, stack, admin
) -> None:
    """A tablet's width (portrait): the page does not scroll sideways (the table scrolls in its
    own box); signed in, filtered and a tenant opened with the keyboard alone."""
    tenant_id, _ = await new_tenant(admin)
    await page.set_viewport_size({"width": 768, "height": 1024})
    await page.goto("/console/sign-in")
    # The key field has the focus when the page opens; Enter sends the form.
    await page.keyboard.type(stack.admin_api_key())
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await expect(page.get_by_test_id("queues")).to_be_visible()  # the owner sees the fleet's lag
    await page.get_by_label("Tenant id or name").focus()
    await page.keyboard.type(tenant_id)
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("tenant-row")).to_have_count(1)
    for _ in range(40):  # Tab through the page to the tenant's link
        await page.keyboard.press("Tab")
        if await focused_text(page) == tenant_id:
            break
    assert await focused_text(page) == tenant_id, "the tenant's link is reached with Tab"
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("tenant-id")).to_have_text(tenant_id)
