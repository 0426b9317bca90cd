"""A job's retry budget travels with the job, not in JetStream's count of its deliveries.

JetStream counts every delivery of a message, and a job may be delivered many times only to
wait (its mailbox's turn, its quota window, a `432`). So a job's *failures* are counted in
its message's `Fleetmail-Failures` header instead: a failure puts the job back on the queue
as a new message carrying the count and the time it is due (`Fleetmail-Not-Before`); a wait
is a NAK with its delay, or, near JetStream's bound on deliveries, a new message with the same
count. A job that waited an hour still gets all its retries; one that keeps failing is
dead-lettered after `max_deliver` attempts.

A new message's `Nats-Msg-Id` is made from the id of the message it replaces: a replica that
dies after publishing it and before acknowledging the old one publishes the same id again
when the old one comes back, and JetStream keeps one. A new message is still looked up in
the delivery ledger before it is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleetmail_contracts.jobs import JobFunction

from .ports import JobMessage, Parking

FAILURES = "Fleetmail-Failures"
NOT_BEFORE = "Fleetmail-Not-Before"
CARRIED = (FAILURES, NOT_BEFORE)


@dataclass(frozen=True)
class Carried:
    """What a job's message carries about its earlier messages."""

    failures: int = 0
    not_before: datetime | None = None
    copy: bool = False
    """The message was put back by mail-service (another message of the job came before)."""

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Carried:
        if FAILURES not in headers:
            return cls()
        try:
            failures = max(0, int(headers[FAILURES]))
        except ValueError:
            failures = 0
        try:
            not_before = datetime.fromisoformat(headers[NOT_BEFORE]) if headers.get(NOT_BEFORE) else None
        except ValueError:
            not_before = None
        return cls(failures, not_before, copy=True)

    @property
    def attempt(self) -> int:
        """This attempt's number: 1 for the first, one more after each failure."""
        return self.failures + 1

    def headers(self) -> dict[str, str]:
        carried = {FAILURES: str(self.failures)}
        if self.not_before is not None:
            carried[NOT_BEFORE] = self.not_before.isoformat()
        return carried


def copy_id(job_id: str, headers: Mapping[str, str]) -> str:
    """The `Nats-Msg-Id` of the message that replaces one: the same for each delivery of it."""
    source = headers.get("Nats-Msg-Id") or job_id
    return f"{job_id}.after.{hashlib.sha256(source.encode()).hexdigest()[:16]}"


class Requeue:
    """Back to the queue: as a wait (not counted) or after a failure (counted)."""

    def __init__(self, parking: Parking, max_deliver: int, clock: Callable[[], datetime]) -> None:
        self.parking = parking
        self.max_deliver = max_deliver
        self.clock = clock

    async def wait(self, message: JobMessage, job_id: str, function: JobFunction, delay_s: float) -> None:
        """Delivered again after `delay_s`, the job's failures unchanged."""
        if message.attempt + 1 < self.max_deliver:
            await message.nack(delay_s)
            return
        failures = Carried.of(message.headers).failures
        await self._again(message, job_id, function, Carried(failures, self._after(delay_s)))

    async def failed(self, message: JobMessage, job_id: str, function: JobFunction, delay_s: float) -> None:
        """Delivered again after `delay_s`, one more failure counted."""
        failures = Carried.of(message.headers).failures + 1
        await self._again(message, job_id, function, Carried(failures, self._after(delay_s)))

    def _after(self, delay_s: float) -> datetime:
        return self.clock() + timedelta(seconds=delay_s)

    async def _again(self, message: JobMessage, job_id: str, function: JobFunction, carried: Carried) -> None:
        await self.parking.put_back(
            message.body, function, copy_id(job_id, message.headers), carried.headers()
        )
        await message.ack()
