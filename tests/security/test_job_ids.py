"""Defect 1 of issue 18: job ids and attachments.

A device of one tenant must not learn which job ids another tenant uses, nor touch another
job's attachments, whatever id it sends (HTTP `job_id`, or an SMTP Message-ID); a device
that sends its own job again must not break the job already queued.
"""

from __future__ import annotations

import json
import uuid

import aiosmtplib
import httpx
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.jobs import delivered_with_subject, final_status
from tests.utils.smtp import context, scan


async def _device(stack, admin: httpx.AsyncClient, tenant_id: str, device_id: str) -> httpx.AsyncClient:
    registered = await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
    assert registered.status_code == 201, registered.text
    return httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(device_id, registered.json()["secret"]), timeout=60
    )


async def _post(panel: httpx.AsyncClient, job: dict, document: bytes) -> httpx.Response:
    return await panel.post(
        "/v1/jobs",
        data={"job": json.dumps(job)},
        files={"files": ("scan.pdf", document, "application/pdf")},
    )


async def _attachments_delivered(stack, http: httpx.AsyncClient, subject: str) -> list[bytes]:
    """The attachment of each message delivered with this subject."""

    async def found() -> list[bytes] | None:
        messages = await delivered_with_subject(stack, http, subject)
        return [next(m.iter_attachments()).get_content() for _, m in messages] or None

    return await eventually(found, what=f"a message {subject!r}")


async def _send_smtp(
    stack, device_id: str, secret: str, message_id: str, subject: str, document: bytes
) -> str:
    """A device's message over SMTP (STARTTLS, AUTH), with this Message-ID and attachment;
    the server's reply to DATA."""
    message = scan(subject=subject, document=document)
    message.replace_header("Message-ID", message_id)
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context(stack)
    ) as smtp:
        await smtp.login(device_id, secret)
        errors, reply = await smtp.send_message(message)
    assert errors == {}, errors
    return reply


async def test_another_tenant_sending_a_known_job_id_gets_its_own_job_and_learns_nothing(
    stack, emulator_http, admin
) -> None:
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    subject = f"victim {job_id}"
    original = b"%PDF-1.4 the victim's contract " + uuid.uuid4().bytes
    async with (
        await _device(stack, admin, victim.tenant_id, f"v-{uuid.uuid4().hex[:6]}") as victim_panel,
        await _device(stack, admin, attacker.tenant_id, f"a-{uuid.uuid4().hex[:6]}") as attacker_panel,
    ):
        queued = await _post(
            victim_panel, {"job_id": job_id, "to": ["boss@fabrikam.example"], "subject": subject}, original
        )
        assert queued.status_code == 202, queued.text

        # The attacker guesses (or has seen) the id, and sends a job of its own under it: the
        # answer is the one any new id gets — no 409 that would say the id exists elsewhere.
        probe = await _post(
            attacker_panel,
            {"job_id": job_id, "to": ["attacker@evil.example"], "subject": f"attacker {job_id}"},
            b"%PDF-1.4 overwritten",
        )
        assert probe.status_code == 202, probe.text
        assert probe.json()["duplicate"] is False
        assert (await final_status(attacker_panel, job_id))["status"] == "sent"
        # Its job is its own: the victim's job is not visible through the attacker's device.
        assert (await attacker_panel.get(f"/v1/jobs/{job_id}")).json()["tenant_id"] == attacker.tenant_id

        status = await final_status(victim_panel, job_id)
    assert status["status"] == "sent", status
    assert status["tenant_id"] == victim.tenant_id
    assert await _attachments_delivered(stack, emulator_http, subject) == [original]
    assert await _attachments_delivered(stack, emulator_http, f"attacker {job_id}") == [
        b"%PDF-1.4 overwritten"
    ]


async def test_a_device_sending_its_job_again_leaves_the_queued_job_intact(
    stack, emulator_http, admin
) -> None:
    tenant = await tenant_with_administrator_grant(stack, emulator_http)
    job_id = f"retry-{uuid.uuid4().hex[:12]}"
    subject = f"retried {job_id}"
    original = b"%PDF-1.4 first attempt " + uuid.uuid4().bytes
    async with await _device(stack, admin, tenant.tenant_id, f"r-{uuid.uuid4().hex[:6]}") as panel:
        job = {"job_id": job_id, "to": ["boss@fabrikam.example"], "subject": subject}
        assert (await _post(panel, job, original)).status_code == 202
        # A lost reply: the device sends the job again (with another upload), at once.
        again = await _post(panel, job, b"%PDF-1.4 second attempt")
        assert again.status_code == 202 and again.json()["duplicate"] is True, again.text
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    assert await _attachments_delivered(stack, emulator_http, subject) == [original]


async def test_the_same_message_id_from_two_tenants_is_two_jobs(stack, emulator_http, admin) -> None:
    """Over SMTP the job id comes from the Message-ID: another tenant's device resending a
    message it has seen (same Message-ID, same device id) neither swallows nor reveals it."""
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    device_id = f"mfp-{uuid.uuid4().hex[:6]}"
    secrets = {}
    for tenant in (victim, attacker):
        registered = await admin.post(
            f"/v1/admin/tenants/{tenant.tenant_id}/devices", json={"device_id": device_id}
        )
        assert registered.status_code == 201, registered.text
        secrets[tenant.tenant_id] = registered.json()["secret"]
    message_id = f"<{uuid.uuid4().hex}@mfp>"
    replies, documents = {}, {}
    for tenant in (victim, attacker):
        documents[tenant.tenant_id] = f"%PDF-1.4 {tenant.tenant_id} ".encode() + uuid.uuid4().bytes
        reply = await _send_smtp(
            stack,
            device_id,
            secrets[tenant.tenant_id],
            message_id,
            f"smtp {tenant.tenant_id}",
            documents[tenant.tenant_id],
        )
        assert "queued as" in reply, reply
        replies[tenant.tenant_id] = reply.rsplit(" ", 1)[-1]
    assert replies[victim.tenant_id] != replies[attacker.tenant_id]
    for tenant in (victim, attacker):

        async def sent(tenant=tenant) -> list | None:
            found = await delivered_with_subject(stack, emulator_http, f"smtp {tenant.tenant_id}")
            return found or None

        [(entry, message)] = await eventually(sent, what=f"{tenant.tenant_id}'s scan")
        assert entry["mail_from"] == tenant.address
        # Each message carries its own tenant's document, not the other's.
        assert next(message.iter_attachments()).get_content() == documents[tenant.tenant_id]


async def test_a_message_sent_again_over_smtp_leaves_the_queued_job_intact(
    stack, emulator_http, admin
) -> None:
    """An MFP whose connection dropped after DATA sends the message again, with the same
    Message-ID: the job queued first is delivered once, with its own attachment."""
    tenant = await tenant_with_administrator_grant(stack, emulator_http)
    device_id = f"mfp-{uuid.uuid4().hex[:6]}"
    registered = await admin.post(
        f"/v1/admin/tenants/{tenant.tenant_id}/devices", json={"device_id": device_id}
    )
    assert registered.status_code == 201, registered.text
    secret = registered.json()["secret"]
    message_id, subject = f"<{uuid.uuid4().hex}@mfp>", f"resent {uuid.uuid4().hex[:8]}"
    original = b"%PDF-1.4 first transmission " + uuid.uuid4().bytes
    first = await _send_smtp(stack, device_id, secret, message_id, subject, original)
    again = await _send_smtp(stack, device_id, secret, message_id, subject, b"%PDF-1.4 second transmission")
    assert "queued as" in first and again.rsplit(" ", 1)[-1] == first.rsplit(" ", 1)[-1], (first, again)

    async def settled() -> list | None:
        jobs = (
            await admin.get(f"/v1/admin/tenants/{tenant.tenant_id}/jobs", params={"device_id": device_id})
        ).json()
        return jobs if jobs and all(job["status"] == "sent" for job in jobs) else None

    [job] = await eventually(settled, what="the job sent")
    assert job["status"] == "sent", job
    assert await _attachments_delivered(stack, emulator_http, subject) == [original]
