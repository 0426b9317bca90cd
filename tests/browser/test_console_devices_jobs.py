"""A tenant's Devices and Jobs pages in a real browser: a device registered with its secret
shown once, its job followed to delivery without a reload, a dead job sent again; and what
an operator and a fleet administrator of another tenant may do there."""

from __future__ import annotations

import json

import httpx
from fleetmail_devkit.probes import tenant_with_administrator_grant
from playwright.async_api import Page, expect

from tests.browser.console import screenshot, sign_in
from tests.utils.console import new_api_key
from tests.utils.jobs import final_status
from tests.utils.tenants import new_tenant, tenant_with_device

DELIVERY = 60_000
"""ms a job may take through the stack to the SMTP emulator on a busy machine."""


async def page_csrf_token(page: Page) -> str:
    token = await page.locator('input[name="csrf_token"]').first.input_value()
    assert token
    return token


async def send_job(stack, device: tuple[str, str], subject: str) -> dict:
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        job = {"to": ["someone@fabrikam.example"], "subject": subject}
        accepted = await panel.post("/v1/jobs", data={"job": json.dumps(job)})
        assert accepted.status_code == 202, accepted.text
        return accepted.json()


async def test_a_device_is_registered_its_job_shows_delivered_live_and_a_dead_job_is_resent(
    page: Page, stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, stack.admin_api_key())

    await page.goto(f"/console/tenants/{tenant_id}/devices")
    await expect(page.get_by_test_id("no-devices")).to_be_visible()
    await page.get_by_label("Device id").fill("mfp-3rd-floor")
    await page.get_by_label("Name (where it stands, its model)").fill("3rd floor, by the kitchen (C3530i)")
    await page.get_by_test_id("register-device").click()
    secret = (await page.get_by_test_id("device-secret").text_content() or "").strip()
    assert len(secret) >= 32
    await expect(page.get_by_test_id("panel-user")).to_have_text("mfp-3rd-floor")
    await expect(page.get_by_test_id("panel-host")).to_have_text("127.0.0.1")
    await expect(page.get_by_test_id("panel-port")).to_contain_text(
        f"{stack.ports.gateway_smtp} with security STARTTLS"
    )
    await expect(page.get_by_test_id("panel-http")).to_have_text(f"{stack.gateway_url}/v1/jobs")
    await screenshot(page, "console-device-registered")

    # Shown once: reloading (the form posted again) or coming back shows it no more.
    await page.reload()
    await expect(page.get_by_text(secret)).to_have_count(0)
    await page.goto(f"/console/tenants/{tenant_id}/devices/mfp-3rd-floor")
    await expect(page.get_by_test_id("device-state")).to_have_text("Enabled")
    await expect(page.get_by_text(secret)).to_have_count(0)

    # The jobs list follows a job to delivery with no reload of the page.
    await page.goto(f"/console/tenants/{tenant_id}/jobs")
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )
    sent = await send_job(stack, ("mfp-3rd-floor", secret), "Scan from the console test")
    row = page.locator(f'[data-testid="job-row"][data-job-id="{sent["job_id"]}"]')
    await expect(row.get_by_test_id("job-status")).to_have_attribute("data-status", "sent", timeout=DELIVERY)
    await expect(row.get_by_test_id("job-status")).to_have_text("Sent")
    assert navigations == []

    await row.get_by_role("link", name=sent["job_id"]).click()
    await expect(page.get_by_test_id("job-status")).to_have_text("Sent")
    delivered = page.locator('[data-testid="timeline-entry"][data-kind="sent"]')
    await expect(delivered.get_by_test_id("smtp-reply")).to_contain_text("250")
    await expect(page.locator('[data-testid="timeline-entry"][data-kind="received"]')).to_have_count(1)

    # A job the mailbox refuses dies (another tenant: the first one's SMTP connection may be
    # reused); fixed at the mailbox, it is sent again from its dead letter.
    refusing = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = refusing.tenant_id
    mailbox = f"{stack.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailbox, json={"address": refusing.address, "smtp_auth_disabled": True})
    registered = await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": "mfp-2"})
    device = ("mfp-2", registered.json()["secret"])
    dead = await send_job(stack, device, "Dead, then sent again")
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        assert (await final_status(panel, dead["job_id"]))["status"] == "failed"
    await emulator_http.post(mailbox, json={"address": refusing.address, "smtp_auth_disabled": False})

    await page.goto(f"/console/tenants/{tenant_id}/dead-letters")
    letter = page.locator(f'[data-testid="dead-letter"][data-job-id="{dead["delivery_id"]}"]')
    await expect(letter).to_contain_text("smtp_auth_disabled")
    await letter.get_by_test_id("resend-one").click()
    await expect(page.get_by_test_id("job-id")).to_have_text(dead["job_id"])
    await expect(page.locator('[data-testid="timeline-entry"][data-kind="resent"]')).to_have_count(1)
    await expect(page.get_by_test_id("job-status")).to_have_attribute("data-status", "sent", timeout=DELIVERY)
    failed = page.locator('[data-testid="timeline-entry"][data-kind="failed"]')
    await expect(failed).to_contain_text("smtp_auth_disabled")


async def test_an_operator_sees_devices_and_jobs_without_actions_and_forged_posts_are_refused(
    page: Page, stack, admin
) -> None:
    tenant_id, (device_id, _) = await tenant_with_device(admin, auto_delete=False)
    operator = await new_api_key(admin, "operator", [tenant_id])
    await sign_in(page, operator["key"])

    await page.goto(f"/console/tenants/{tenant_id}/devices")
    await expect(page.get_by_role("link", name=device_id)).to_be_visible()
    await expect(page.get_by_test_id("register-device")).to_have_count(0)
    await page.get_by_role("link", name=device_id).click()
    await expect(page.get_by_test_id("device-state")).to_have_text("Enabled")
    await expect(page.get_by_test_id("rotate-secret")).to_have_count(0)
    await expect(page.get_by_test_id("device-switch")).to_have_count(0)
    await page.goto(f"/console/tenants/{tenant_id}/jobs")
    await expect(page.get_by_test_id("no-jobs")).to_be_visible()
    await page.goto(f"/console/tenants/{tenant_id}/dead-letters")
    await expect(page.get_by_test_id("dead-letters")).to_be_visible()
    await expect(page.get_by_test_id("resend-matching")).to_have_count(0)

    # The operator's own session and a valid CSRF token: the server still refuses each change.
    token = await page_csrf_token(page)
    base = f"/console/tenants/{tenant_id}"
    for path, form in [
        (f"{base}/devices", {"device_id": "forged"}),
        (f"{base}/devices/{device_id}/secret", {}),
        (f"{base}/devices/{device_id}/enabled", {"enabled": "off"}),
        (f"{base}/dead-letters/resend", {}),
        (f"{base}/dead-letters/1/resend", {}),
    ]:
        forged = await page.request.post(path, form={**form, "csrf_token": token})
        assert forged.status == 403 and "read-only" in await forged.text(), path
    [device] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/devices")).json()
    assert device["device_id"] == device_id and device["disabled"] is False


async def test_a_fleet_administrator_cannot_open_another_tenants_devices_or_jobs(
    page: Page, stack, admin
) -> None:
    mine, _ = await new_tenant(admin)
    theirs, (device_id, _) = await tenant_with_device(admin, auto_delete=False)
    fleet_admin = await new_api_key(admin, "fleet_admin", [mine])
    await sign_in(page, fleet_admin["key"])
    await page.goto(f"/console/tenants/{mine}/devices")
    await expect(page.get_by_test_id("register-device")).to_be_visible()

    for path in ("devices", f"devices/{device_id}", "jobs", "jobs/rows", "dead-letters"):
        refused = await page.goto(f"/console/tenants/{theirs}/{path}")
        assert refused is not None and refused.status == 403, path
        await expect(page.get_by_test_id("error-detail")).to_contain_text("no access")
        await expect(page.get_by_text(device_id)).to_have_count(0)
