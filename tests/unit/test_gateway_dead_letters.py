"""A page of a tenant's dead letters: a bounded stretch of the shared stream, newest first,
with the cursor to the next page (an in-memory stream in place of JetStream)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from fleetmail_contracts.dead_letters import DeadLetter
from job_gateway.adapters.dead_letters import PAGE_SCAN, read_page


def letter(tenant_id: str, sequence: int) -> DeadLetter:
    job = {"tenant_id": tenant_id, "job_id": f"job-{sequence}"}
    return DeadLetter(
        dead_letter_id=f"dl-{sequence}",
        original_subject="fleetmail.jobs.v1.scan_to_email",
        payload_b64=base64.b64encode(json.dumps(job).encode()).decode(),
        reason_code="smtp_auth_disabled",
        detail="SMTP AUTH is off for the mailbox",
        deliveries=1,
        failed_at=datetime(2026, 3, 1, tzinfo=UTC),
        service="mail-service",
    )


class Stream:
    """Sequences `first..last`; `ours` are the tenant's, the rest another tenant's."""

    def __init__(self, first: int, last: int, ours: set[int]) -> None:
        self.first, self.last = first, last
        self.letters = {s: letter("acme" if s in ours else "other", s) for s in range(first, last + 1)}
        self.reads: list[int] = []

    async def read(self, sequence: int) -> DeadLetter | None:
        self.reads.append(sequence)
        return self.letters.get(sequence)

    async def page(self, before: int | None, limit: int):
        return await read_page(self.read, "acme", self.first, self.last, before, limit)


async def test_pages_follow_the_cursor_newest_first_and_see_every_letter_once() -> None:
    stream = Stream(1, 20, ours={3, 7, 8, 15, 19})
    first = await stream.page(None, 2)
    assert [d.sequence for d in first.dead_letters] == [19, 15] and first.next == 15
    second = await stream.page(first.next, 2)
    assert [d.sequence for d in second.dead_letters] == [8, 7] and second.next == 7
    third = await stream.page(second.next, 2)
    assert [d.sequence for d in third.dead_letters] == [3] and third.next is None
    assert third.dead_letters[0].job_id == "job-3"


async def test_a_page_reads_a_bounded_stretch_even_when_the_tenant_has_few_letters() -> None:
    last = 3 * PAGE_SCAN
    stream = Stream(1, last, ours={5})
    page = await stream.page(None, 50)
    assert page.dead_letters == [] and page.next == last - PAGE_SCAN + 1
    assert len(stream.reads) == PAGE_SCAN
    found, before = [], None
    while True:
        page = await stream.page(before, 50)
        found += page.dead_letters
        if (before := page.next) is None:
            break
    assert [d.sequence for d in found] == [5]


async def test_a_cursor_beyond_the_stream_starts_at_its_newest_and_an_empty_stream_has_no_next() -> None:
    stream = Stream(10, 12, ours={10, 12})
    page = await stream.page(2**70, 10)
    assert [d.sequence for d in page.dead_letters] == [12, 10] and page.next is None
    assert (await Stream(1, 0, ours=set()).page(None, 10)).next is None
    # Everything below the cursor is gone from the stream (expired): nothing is read.
    expired = Stream(10, 12, ours={10})
    assert (await expired.page(5, 10)).dead_letters == [] and expired.reads == []
