"""Listing a tenant's dead letters a page at a time, on the real dead-letter stream.

The stream holds every tenant's dead letters; one listing call reads a bounded stretch of
it and says where the next page starts. A sequence number that names nothing (beyond the
stream, beyond a 64-bit number) is a 404; one that is not a sequence number a 422.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime

import httpx
import nats
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter, dead_letter_subject
from fleetmail_devkit.probes import tenant_with_administrator_grant
from job_gateway.adapters.dead_letters import PAGE_SCAN

from tests.integration.test_cli import cli
from tests.utils.jobs import final_status, submit
from tests.utils.tenants import new_tenant

NOISE = PAGE_SCAN + 8
"""Another tenant's dead letters after ours: more than one page reads."""


async def others_dead_letters(stack, count: int) -> list[int]:
    """`count` dead letters of a tenant that is not the test's, straight into the stream."""
    job = {"tenant_id": f"noise-{uuid.uuid4().hex[:6]}", "job_id": "noise"}
    letter = DeadLetter(
        dead_letter_id="noise",
        original_subject="fleetmail.jobs.v1.scan_to_email",
        payload_b64=base64.b64encode(json.dumps(job).encode()).decode(),
        reason_code="smtp_auth_disabled",
        detail="noise",
        deliveries=1,
        failed_at=datetime.now(UTC),
        service="test",
    ).model_dump_json()
    client = await nats.connect(stack.nats_url)
    try:
        js = client.jetstream()
        return [
            (await js.publish(dead_letter_subject("test"), letter.encode(), stream=streams.DLQ_STREAM)).seq
            for _ in range(count)
        ]
    finally:
        await client.close()


async def forget(stack, sequences: list[int]) -> None:
    client = await nats.connect(stack.nats_url)
    try:
        for sequence in sequences:
            await client.jsm().delete_msg(streams.DLQ_STREAM, sequence)
    finally:
        await client.close()


async def test_dead_letters_come_a_bounded_page_at_a_time_with_a_cursor_to_the_next(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    device = f"dp-{tenant_id}"
    secret = (await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device})).json()[
        "secret"
    ]
    mailbox = f"{stack.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": True})
    jobs = []
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device, secret), timeout=60) as panel:
        for n in range(3):
            jobs.append(await submit(panel, {"to": ["x@fabrikam.example"], "subject": f"dead {n}"}))
        for job_id in jobs:
            status = await final_status(panel, job_id)
            assert status["status"] == "failed", status
    noise = await others_dead_letters(stack, NOISE)
    url = f"/v1/admin/tenants/{tenant_id}/dead-letters"
    try:
        first = (await admin.get(url, params={"limit": 2})).json()
        # The newest stretch of the stream is the other tenant's: nothing of ours, and a cursor.
        assert first["dead_letters"] == [] and first["next"] == noise[-1] - PAGE_SCAN + 1
        pages, before = [], first["next"]
        while before is not None:
            page = (await admin.get(url, params={"limit": 2, "before": before})).json()
            pages.append(page)
            before = page["next"]
        found = [d for page in pages for d in page["dead_letters"]]
        # Each once (the jobs fail side by side, so in no set order).
        assert sorted(d["job_id"] for d in found) == sorted(jobs)
        sequences = [d["sequence"] for d in found]
        assert sequences == sorted(sequences, reverse=True) and max(sequences) < noise[0]
        full = next(page for page in pages if len(page["dead_letters"]) == 2)
        assert full["next"] == full["dead_letters"][-1]["sequence"]
        # The command line follows the pages too: all three, though the first page had none.
        listed = await asyncio.to_thread(cli, stack, "dead-letters", "list", tenant_id, "--limit", "5")
        assert listed.exit_code == 0 and all(job_id in listed.output for job_id in jobs), listed.output
    finally:
        await forget(stack, noise)

    resend = f"/v1/admin/tenants/{tenant_id}/dead-letters/{{}}/resend"
    for beyond in (2**64, 2**64 - 1, 2**70, max(sequences) + 10**9):
        missing = await admin.post(resend.format(beyond))
        assert missing.status_code == 404 and missing.json()["type"].endswith("/dead-letter-not-found"), (
            beyond
        )
    for malformed in ("-1", "0", "abc", "1e3"):
        assert (await admin.post(resend.format(malformed))).status_code == 422, malformed
    assert (await admin.get(url, params={"before": 0})).status_code == 422
    assert (await admin.get(url, params={"before": "x"})).status_code == 422


async def our_other_dead_letter(stack, tenant_id: str) -> int:
    """A dead letter of the tenant for another reason, straight into the stream."""
    job = {"tenant_id": tenant_id, "job_id": f"other-{uuid.uuid4().hex[:6]}"}
    letter = DeadLetter(
        dead_letter_id=uuid.uuid4().hex,
        original_subject="fleetmail.jobs.v1.scan_to_email",
        payload_b64=base64.b64encode(json.dumps(job).encode()).decode(),
        reason_code="retries_exhausted",
        detail="another reason",
        deliveries=8,
        failed_at=datetime.now(UTC),
        service="test",
    ).model_dump_json()
    client = await nats.connect(stack.nats_url)
    try:
        published = await client.jetstream().publish(
            dead_letter_subject("test"), letter.encode(), stream=streams.DLQ_STREAM
        )
        return published.seq
    finally:
        await client.close()


async def test_dead_letters_of_a_reason_and_time_range_are_resent_in_one_call(
    stack, emulator_http, admin
) -> None:
    """Three jobs died of SMTP AUTH being off, a fourth too but its document is gone, and one
    died of something else. Once the mailbox is fixed, one bulk resend (from the command line,
    with its progress line) sends the three, skips the fourth saying why, leaves the other
    reason alone; a second run resends nothing twice; another tenant's key may not do it."""
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    mailbox = f"{stack.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": True})
    started = datetime.now(UTC)
    device = f"bulk-{tenant_id}"
    secret = (await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device})).json()[
        "secret"
    ]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device, secret), timeout=60) as panel:
        plain = [
            await submit(panel, {"to": ["x@fabrikam.example"], "subject": f"dead {n}"}) for n in range(3)
        ]
        scan = ("scan.pdf", b"%PDF-1.4 scan", "application/pdf")
        with_document = await submit(panel, {"to": ["x@fabrikam.example"]}, {"files": scan})
        for job_id in [*plain, with_document]:
            assert (await final_status(panel, job_id))["status"] == "failed"
        await our_other_dead_letter(stack, tenant_id)
        client = await nats.connect(stack.nats_url)
        try:
            store = await client.jetstream().object_store(streams.ATTACHMENTS_BUCKET)
            for info in await store.list():
                if info.name.startswith(f"{with_document}/"):
                    await store.delete(info.name)
        finally:
            await client.close()
        await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": False})

        url = f"/v1/admin/tenants/{tenant_id}/dead-letters/resend"
        before_any = await admin.post(url, json={"until": started.isoformat()})
        assert before_any.json() | {"next": None} == {"resent": 0, "job_ids": [], "skipped": [], "next": None}
        other, _ = await new_tenant(admin)
        key = (
            await admin.post(
                "/v1/admin/api-keys", json={"name": "theirs", "role": "fleet_admin", "tenant_ids": [other]}
            )
        ).json()["key"]
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as theirs:
            assert (await theirs.post(url, json={})).status_code == 403

        since = started.strftime("%Y-%m-%dT%H:%M:%S")
        args = [
            "dead-letters",
            "resend",
            "--tenant",
            tenant_id,
            "--reason",
            "smtp_auth_disabled",
            "--since",
            since,
        ]
        ran = await asyncio.to_thread(cli, stack, *args)
        assert ran.exit_code == 0, ran.output
        assert "resent 3, skipped 1" in ran.output and "documents_gone" in ran.output, ran.output
        finals = [await final_status(panel, job_id) for job_id in plain]
        assert [s["status"] for s in finals] == ["sent"] * 3, finals
        assert (await panel.get(f"/v1/jobs/{with_document}")).json()["status"] == "failed"

        again = (
            await admin.post(url, json={"reason": "smtp_auth_disabled", "since": started.isoformat()})
        ).json()
        assert again["resent"] == 0, again
        assert sorted(s["why"] for s in again["skipped"]) == [
            "documents_gone",
            "not_failed",
            "not_failed",
            "not_failed",
        ]
    messages = (await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages")).json()
    sent = [m["message_id"] for m in messages]
    assert all(sent.count(f"<{job_id}@fleetmail>") == 1 for job_id in plain)
    bad = await admin.post(url, json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert bad.status_code == 422
