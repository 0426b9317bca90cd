"""The dead-letter list of a tenant, and resending a dead job.

Dead letters stay in the FLEETMAIL_DLQ stream (the original message and why it failed);
this reads it newest first, keeps the tenant's, and republishes a chosen one to its
original subject. A resend has its own `Nats-Msg-Id` (one per dead letter), so a double
click within JetStream's duplicate window sends once.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_runtime.bus import bus_errors
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from ..schemas import DeadLetterView

SCAN_LIMIT = 5000
"""At most this many dead letters are read to answer one listing."""
WINDOW = 64
"""Dead letters read at once."""


def _job_of(letter: DeadLetter) -> dict[str, Any]:
    try:
        job = json.loads(base64.b64decode(letter.payload_b64))
    except (ValueError, TypeError):
        return {}
    return job if isinstance(job, dict) else {}


class JetStreamDeadLetters:
    """`ports.DeadLetterStream` on the FLEETMAIL_DLQ stream; NATS errors are `BusUnavailable`."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

    async def _read(self, sequence: int) -> DeadLetter | None:
        js = self.broker.connection.jetstream()
        try:
            raw = await js.get_msg(streams.DLQ_STREAM, sequence)
        except NotFoundError:
            return None
        try:
            return DeadLetter.model_validate_json(raw.data or b"")
        except ValidationError:
            return None

    async def newest(self, tenant_id: str, limit: int) -> list[DeadLetterView]:
        with bus_errors("the dead letters could not be read"):
            return await self._list(tenant_id, limit)

    async def _list(self, tenant_id: str, limit: int) -> list[DeadLetterView]:
        js = self.broker.connection.jetstream()
        info = await js.stream_info(streams.DLQ_STREAM)
        found: list[DeadLetterView] = []
        newest, oldest = (
            info.state.last_seq,
            max(info.state.first_seq, 1, info.state.last_seq - SCAN_LIMIT + 1),
        )
        # Newest first, a window of messages at a time read at once: one listing used to be
        # thousands of sequential round trips (one per dead letter of every tenant).
        for top in range(newest, oldest - 1, -WINDOW):
            sequences = range(top, max(top - WINDOW, oldest - 1), -1)
            letters = await asyncio.gather(*(self._read(sequence) for sequence in sequences))
            for sequence, letter in zip(sequences, letters, strict=True):
                if letter is None or (job := _job_of(letter)).get("tenant_id") != tenant_id:
                    continue
                found.append(
                    DeadLetterView(
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
                )
                if len(found) == limit:
                    return found
        return found

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
