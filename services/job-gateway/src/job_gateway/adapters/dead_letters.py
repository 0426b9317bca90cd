"""The dead-letter list of a tenant, and resending a dead job.

Dead letters stay in the FLEETMAIL_DLQ stream (the original message and why it failed);
this reads it newest first a page at a time (a bounded number of stream messages per call,
with a cursor to the next page), keeps the tenant's, and republishes a chosen one to its
original subject. A resend has its own `Nats-Msg-Id` (one per dead letter), so a double
click within JetStream's duplicate window sends once.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_runtime.bus import bus_errors
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from ..schemas import DeadLetterPage, DeadLetterView

PAGE_SCAN = 256
"""At most this many stream messages are read to answer one listing call (a page): the
stream holds every tenant's dead letters, so a page may hold fewer than asked, or none, and
its `next` says where the following page starts."""
WINDOW = 64
"""Dead letters read at once."""
MAX_SEQUENCE = 2**64 - 1
"""A JetStream sequence is an unsigned 64-bit number: a larger one names nothing."""


def _job_of(letter: DeadLetter) -> dict[str, Any]:
    try:
        job = json.loads(base64.b64decode(letter.payload_b64))
    except (ValueError, TypeError):
        return {}
    return job if isinstance(job, dict) else {}


def view_of(sequence: int, letter: DeadLetter, job: dict[str, Any]) -> DeadLetterView:
    return DeadLetterView(
        sequence=sequence,
        dead_letter_id=letter.dead_letter_id,
        job_id=job.get("job_id"),
        device_id=job.get("device_id"),
        function=job.get("function"),
        reason_code=letter.reason_code,
        detail=letter.detail,
        deliveries=letter.deliveries,
        failed_at=letter.failed_at,
        service=letter.service,
    )


async def read_page(
    read: Callable[[int], Awaitable[DeadLetter | None]],
    tenant_id: str,
    first: int,
    last: int,
    before: int | None,
    limit: int,
) -> DeadLetterPage:
    """The tenant's dead letters among stream sequences `first..last` below `before`, newest
    first: at most `limit` of them, from at most `PAGE_SCAN` sequences, a `WINDOW` at a time
    read at once. `next` is the `before` of the following page, or None at the stream's start."""
    top = last if before is None else min(before - 1, last)
    bottom = max(first, 1, top - PAGE_SCAN + 1)
    found: list[DeadLetterView] = []
    for high in range(top, bottom - 1, -WINDOW):
        sequences = range(high, max(high - WINDOW, bottom - 1), -1)
        letters = await asyncio.gather(*(read(sequence) for sequence in sequences))
        for sequence, letter in zip(sequences, letters, strict=True):
            if letter is None or (job := _job_of(letter)).get("tenant_id") != tenant_id:
                continue
            found.append(view_of(sequence, letter, job))
            if len(found) == limit:
                return DeadLetterPage(dead_letters=found, next=sequence if sequence > max(first, 1) else None)
    return DeadLetterPage(dead_letters=found, next=bottom if bottom > max(first, 1) else None)


class JetStreamDeadLetters:
    """`ports.DeadLetterStream` on the FLEETMAIL_DLQ stream; NATS errors are `BusUnavailable`."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

    async def _read(self, sequence: int) -> DeadLetter | None:
        if not 1 <= sequence <= MAX_SEQUENCE:
            return None
        js = self.broker.connection.jetstream()
        try:
            raw = await js.get_msg(streams.DLQ_STREAM, sequence)
        except NotFoundError:
            return None
        try:
            return DeadLetter.model_validate_json(raw.data or b"")
        except ValidationError:
            return None

    async def page(self, tenant_id: str, before: int | None, limit: int) -> DeadLetterPage:
        with bus_errors("the dead letters could not be read"):
            info = await self.broker.connection.jetstream().stream_info(streams.DLQ_STREAM)
            return await read_page(
                self._read, tenant_id, info.state.first_seq, info.state.last_seq, before, limit
            )

    async def letter(self, tenant_id: str, sequence: int) -> DeadLetter | None:
        with bus_errors("the dead letter could not be read"):
            letter = await self._read(sequence)
        if letter is None or _job_of(letter).get("tenant_id") != tenant_id:
            return None
        return letter

    async def resend(self, tenant_id: str, sequence: int) -> str | None:
        with bus_errors("the dead job could not be queued again"):
            letter = await self._read(sequence)
            if letter is None:
                return None
            job = _job_of(letter)
            if job.get("tenant_id") != tenant_id or not letter.original_subject.startswith(
                streams.JOB_SUBJECT_PREFIX
            ):
                return None
            headers = {**letter.original_headers, "Nats-Msg-Id": f"resend-{letter.dead_letter_id}"}
            await self.broker.connection.jetstream().publish(
                letter.original_subject,
                base64.b64decode(letter.payload_b64),
                headers=headers,
                stream=streams.JOBS_STREAM,
            )
        return str(job.get("job_id"))
