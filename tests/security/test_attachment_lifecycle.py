"""Attachments are kept only while their job needs them, against the whole stack.

- A sent job's documents are gone from the Object Store when the job shows as sent — chunks
  and meta message, no tombstone left — and the store's use is a metric with its limit.
- A dead letter keeps its documents past the sweep's grace (an orphan stored after it is
  swept first), until its retention ends; then they are gone, and a resend says so (410,
  naming the document) while the dead letter stays listed.
- An object no job holds (a crash's orphan) is swept once older than the grace; a fresh one
  is not.

The session's stack runs with a 5 s grace, a 12 s dead-letter retention and a sweep every
half second (tests/conftest.py).
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_devkit.probes import device_panel, scrape, tenant_with_administrator_grant, total
from fleetmail_devkit.stack import Stack
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tests.utils import eventually
from tests.utils.jobs import dead_letters_of, final_status, received, submit

STREAM = f"OBJ_{ATTACHMENTS_BUCKET}"
SCAN = b"%PDF-1.4 lifecycle " + bytes(300_000)


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(stack.nats_url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


def grace_s(stack: Stack) -> float:
    return float(stack.extra_env["FLEETMAIL_MAIL_ATTACHMENT_ORPHAN_GRACE_S"])


def meta_subject(name: str) -> str:
    return f"$O.{ATTACHMENTS_BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


async def stored_at(js: JetStreamContext, name: str) -> datetime | None:
    """When the object was stored; None when nothing of it is left (not even a tombstone)."""
    try:
        msg = await js.get_last_msg(STREAM, meta_subject(name))
    except NotFoundError:
        return None
    return msg.time


async def gone(js: JetStreamContext, name: str) -> bool:
    return await stored_at(js, name) is None


async def names_of(js: JetStreamContext, delivery_id: str) -> list[str]:
    """The objects stored for the job (names `<delivery id>/<submission>/<n>`), tombstones included."""
    store = await js.object_store(ATTACHMENTS_BUCKET)
    try:
        listed = await store.list()
    except NotFoundError:
        return []
    return sorted(info.name for info in listed if info.name.startswith(f"{delivery_id}/"))


async def test_a_sent_jobs_documents_are_gone_once_it_shows_as_sent(stack, emulator_http, js) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    async with device_panel(stack, principal.tenant_id) as panel:
        job_id = await submit(
            panel,
            {"to": ["x@fabrikam.example"], "subject": "kept only while sent"},
            {"files": ("scan.pdf", SCAN, "application/pdf")},
        )
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    _, message = await received(stack, emulator_http, job_id)
    [part] = list(message.iter_attachments())
    assert part.get_content() == SCAN  # the document was there when it was sent
    assert await names_of(js, job_id) == []
    samples = await eventually(lambda: scrape(stack, "mail-service"), what="a scrape")
    assert any(s.name == "fleetmail_attachment_store_bytes" for s in samples)
    assert total(samples, "fleetmail_attachment_store_limit_bytes") == 10 * 1024**3


async def test_a_dead_letter_keeps_its_documents_for_its_retention_then_a_resend_says_they_are_gone(
    stack, emulator_http, admin, js
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    mailbox = f"{stack.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": True})
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(
            panel,
            {"to": ["x@fabrikam.example"], "subject": "dead, then gone"},
            {"files": ("contract.pdf", SCAN, "application/pdf")},
        )
        assert (await final_status(panel, job_id))["status"] == "failed"
    [letter] = await dead_letters_of(admin, tenant_id)
    kept = await names_of(js, job_id)
    assert len(kept) == 1
    # An orphan stored after the job failed: once the sweep has removed it, the sweep would
    # have removed the dead letter's older document too, had the dead letter not held it.
    store = await js.object_store(ATTACHMENTS_BUCKET)
    orphan = f"{uuid.uuid4().hex}/{uuid.uuid4().hex}/0"
    await store.put(orphan, io.BytesIO(b"left by a crash"))
    await eventually(lambda: gone(js, orphan), within=30, every=0.2, what="the orphan to be swept")
    assert await names_of(js, job_id) == kept, "the dead letter holds its document"

    async def documents_gone() -> bool:
        return await names_of(js, job_id) == []

    await eventually(documents_gone, within=40, every=0.2, what="the retention to end")
    await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": False})
    resent = await admin.post(f"/v1/admin/tenants/{tenant_id}/dead-letters/{letter['sequence']}/resend")
    assert resent.status_code == 410, resent.text
    problem = resent.json()
    assert problem["type"].endswith("/documents-gone") and "contract.pdf" in problem["detail"]
    listed = await dead_letters_of(admin, tenant_id)
    assert [entry["job_id"] for entry in listed] == [job_id], "nothing else is lost"


async def test_an_orphan_older_than_the_grace_is_swept_and_a_fresh_one_is_not(stack, js) -> None:
    store = await js.object_store(ATTACHMENTS_BUCKET)
    old, fresh = (f"{uuid.uuid4().hex}/{uuid.uuid4().hex}/0" for _ in range(2))
    await store.put(old, io.BytesIO(b"an upload whose job was never queued"))

    async def half_the_grace_old() -> bool:
        at = await stored_at(js, old)
        return at is not None and (datetime.now(UTC) - at).total_seconds() >= grace_s(stack) / 2

    await eventually(half_the_grace_old, within=30, what="the first orphan to age")
    await store.put(fresh, io.BytesIO(b"an upload whose job is being queued"))
    await eventually(lambda: gone(js, old), within=30, every=0.1, what="the old orphan to go")
    # The fresh one was half the grace younger: the sweep that removed the old one kept it.
    assert not await gone(js, fresh)
    await eventually(lambda: gone(js, fresh), within=30, every=0.2, what="it to age and go")
