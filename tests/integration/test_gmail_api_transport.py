"""A Google tenant whose transport is gmail_api: its administrator signs in for gmail.send
only, and every function of the device's table, and a 25 MB scan, arrive through the Gmail
API emulator (the stack's mail-service uses the one on `stack.ports.gmail_api`)."""

import email
import email.policy
import hashlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fleetmail_devkit.fleet import sample_pdf
from fleetmail_devkit.probes import SmtpEmulator, device_panel, smtp_emulator

from tests.integration.test_mail_delivery import FUNCTIONS
from tests.utils import eventually
from tests.utils.jobs import final_status, submit
from tests.utils.tenants import browser_sign_in


@pytest.fixture(scope="module")
async def gmail(stack) -> AsyncIterator[SmtpEmulator]:
    async with smtp_emulator(stack, "gmail", api_port=stack.ports.gmail_api) as running:
        yield running


@pytest.fixture
async def fleet(stack, emulator_http, admin, gmail) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A Google tenant sending through the Gmail API, its administrator signed in, a device."""
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    address = f"admin@{tenant_id}.example"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "provider": "google",
            "transport": "gmail_api",
            "administrator_address": address,
            "smtp": {"host": "127.0.0.1", "port": gmail.port},
        },
    )
    assert created.status_code == 200, created.text
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    scope = parse_qs(urlparse(started["authorization_url"]).query)["scope"][0].split()
    assert "https://www.googleapis.com/auth/gmail.send" in scope and "https://mail.google.com/" not in scope
    assert (await browser_sign_in(stack, emulator_http, started["authorization_url"])).status_code == 200

    async def signed_in() -> bool:
        status = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()
        assert status["transport"]["ready"] is True, status["transport"]
        return True

    await eventually(signed_in, what="the administrator's gmail.send grant")
    async with device_panel(stack, tenant_id) as panel:
        yield address, panel


async def received(http: httpx.AsyncClient, gmail: SmtpEmulator, job_id: str):
    message_id = f"<{job_id}@fleetmail>"
    [entry] = (
        await http.get(f"{gmail.control_url}/_emulator/messages", params={"message_id": message_id})
    ).json()
    raw = (await http.get(f"{gmail.control_url}/_emulator/messages/{entry['id']}/raw")).content
    return entry, email.message_from_bytes(raw, policy=email.policy.default)


async def test_every_device_function_is_delivered_through_the_gmail_api(emulator_http, gmail, fleet) -> None:
    address, panel = fleet
    jobs = {}
    for function, extra in FUNCTIONS.items():
        fields = {k: v.replace("{admin}", address) for k, v in extra.items()}
        job = {"function": function, "to": ["someone@fabrikam.example"], **fields}
        if function == "internet_fax_tx":
            files = {"files": ("fax.tif", b"II*\x00" + bytes(64), "image/tiff")}
        else:
            files = {"files": ("scan.pdf", sample_pdf(function), "application/pdf")}
        jobs[function] = await submit(panel, job, files)
    for function, job_id in jobs.items():
        status = await final_status(panel, job_id)
        assert status["status"] == "sent", (function, status)
        entry, message = await received(emulator_http, gmail, job_id)
        assert entry["auth_mechanism"] == "GMAIL_API" and entry["auth_user"] == address
        assert message["From"] == address and message["X-Fleetmail-Function"] == function
        attachments = list(message.iter_attachments())
        if function == "scan_to_url":
            assert attachments == [] and "https://files.example/scans/1" in message.get_body().get_content()
        elif function == "internet_fax_tx":
            assert attachments[0].get_content_type() == "image/tiff"
        else:
            assert attachments[0].get_content() == sample_pdf(function)
        if function == "scan_to_me":
            assert entry["rcpt_tos"] == [address]


async def test_a_25_mb_scan_arrives_intact_through_the_gmail_api(emulator_http, gmail, fleet) -> None:
    _, panel = fleet
    scan = hashlib.sha256(b"25MB").digest() * (25 * 1024 * 1024 // 32)
    job_id = await submit(
        panel, {"to": ["x@fabrikam.example"]}, {"files": ("big.pdf", scan, "application/pdf")}
    )
    status = await final_status(panel, job_id, 120)
    assert status["status"] == "sent", status
    entry, message = await received(emulator_http, gmail, job_id)
    assert entry["auth_mechanism"] == "GMAIL_API"
    attachment = next(message.iter_attachments())
    assert hashlib.sha256(attachment.get_content()).hexdigest() == hashlib.sha256(scan).hexdigest()
