"""Resending a dead job whose documents are no longer kept (job-gateway's `DeadLetterDesk`,
on in-memory fakes): refused with `DocumentsGone` naming the document, and nothing queued."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fleetmail_contracts.dead_letters import DeadLetter
from job_gateway.errors import DocumentsGone
from job_gateway.use_cases.jobs import DeadLetterDesk, documents_of

FAILED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=7)


def letter(attachments: list[dict[str, Any]]) -> DeadLetter:
    job = {"job_id": "j1", "tenant_id": "acme", "attachments": attachments}
    return DeadLetter(
        dead_letter_id="d1",
        original_subject="fleetmail.jobs.v1.scan_to_email",
        original_headers={},
        payload_b64=base64.b64encode(json.dumps(job).encode()).decode(),
        reason_code="smtp_auth_disabled",
        detail="refused",
        deliveries=1,
        failed_at=FAILED_AT,
        service="mail-service",
    )


SCAN = {"object_name": "j1/s/0", "filename": "contract.pdf"}


class Fakes:
    def __init__(self, dead: DeadLetter, stored: set[str]) -> None:
        self.dead, self.stored, self.resent, self.requeued = dead, stored, 0, 0

    async def letter(self, tenant_id: str, sequence: int) -> DeadLetter | None:
        return self.dead

    async def resend(self, tenant_id: str, sequence: int) -> str | None:
        self.resent += 1
        return "j1"

    async def exists(self, object_name: str) -> bool:
        return object_name in self.stored

    async def requeue_job(self, job_id: str, now: datetime) -> None:
        self.requeued += 1


def desk(fakes: Fakes, now: datetime) -> DeadLetterDesk:
    return DeadLetterDesk(fakes, fakes, fakes, RETENTION, lambda: now)  # type: ignore[arg-type]


def test_a_dead_jobs_documents_are_read_from_its_payload() -> None:
    assert documents_of(letter([SCAN, {"filename": "no name"}])) == [("contract.pdf", "j1/s/0")]
    broken = letter([]).model_copy(update={"payload_b64": "!!"})
    assert documents_of(broken) == []


async def test_within_the_retention_with_its_documents_stored_a_dead_job_is_resent() -> None:
    fakes = Fakes(letter([SCAN]), {"j1/s/0"})
    accepted = await desk(fakes, FAILED_AT + RETENTION - timedelta(seconds=1)).resend("acme", 5)
    assert accepted.job_id == "j1" and fakes.resent == 1 and fakes.requeued == 1


async def test_after_the_retention_a_resend_is_refused_naming_the_documents() -> None:
    fakes = Fakes(letter([SCAN]), {"j1/s/0"})
    with pytest.raises(DocumentsGone, match=r"contract\.pdf"):
        await desk(fakes, FAILED_AT + RETENTION).resend("acme", 5)
    assert fakes.resent == 0 and fakes.requeued == 0


async def test_a_document_deleted_already_is_named_and_nothing_is_queued() -> None:
    fakes = Fakes(letter([SCAN]), set())
    with pytest.raises(DocumentsGone, match=r"contract\.pdf of dead job 5 is no longer stored"):
        await desk(fakes, FAILED_AT + timedelta(hours=1)).resend("acme", 5)
    assert fakes.resent == 0


async def test_a_dead_job_without_documents_is_resent_whenever() -> None:
    fakes = Fakes(letter([]), set())
    await desk(fakes, FAILED_AT + timedelta(days=29)).resend("acme", 5)
    assert fakes.resent == 1
