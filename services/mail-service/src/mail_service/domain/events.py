"""The mail events of a job, built from what happened (no I/O, no clock: `now` is given)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from fleetmail_contracts.jobs import JobBase, JobFunction
from fleetmail_contracts.mail_events import (
    MailAccepted,
    MailDeferred,
    MailFailed,
    MailPaced,
    MailParked,
    MailSent,
    MailWaitingForQuota,
)

from .decisions import DeadLetter, Delivered, WaitForMailbox
from .limits import WaitKind


class _Common(TypedDict):
    event_id: str
    job_id: str
    tenant_id: str
    device_id: str
    function: JobFunction
    occurred_at: datetime


@dataclass(frozen=True)
class JobRef:
    """Which job an event is about."""

    job_id: str
    tenant_id: str
    device_id: str
    function: JobFunction

    @classmethod
    def of(cls, job: JobBase, function: JobFunction) -> JobRef:
        return cls(job.job_id, job.tenant_id, job.device_id, function)

    def _common(self, now: datetime) -> _Common:
        return {
            "event_id": uuid.uuid4().hex,
            "job_id": self.job_id,
            "tenant_id": self.tenant_id,
            "device_id": self.device_id,
            "function": self.function,
            "occurred_at": now,
        }

    def accepted(self, now: datetime, sender: str) -> MailAccepted:
        return MailAccepted(**self._common(now), sender=sender)

    def sent(self, now: datetime, delivered: Delivered) -> MailSent:
        return MailSent(
            **self._common(now),
            sender=delivered.sender,
            message_id=delivered.message_id,
            smtp_reply=delivered.smtp_reply,
            accepted_recipients=delivered.accepted,
            rejected_recipients=delivered.rejected,
        )

    def deferred(self, now: datetime, attempt: int, delay_s: float, reason: str) -> MailDeferred:
        return MailDeferred(
            **self._common(now),
            attempt=attempt,
            next_attempt_at=now + timedelta(seconds=delay_s),
            reason=reason,
        )

    def failed(self, now: datetime, failure: DeadLetter) -> MailFailed:
        return MailFailed(
            **self._common(now),
            reason_code=failure.reason,
            detail=failure.detail,
            remedy=failure.remedy,
            smtp_reply=failure.smtp_reply,
        )

    def parked(
        self, now: datetime, user: str, resume_deadline: datetime, *, administrator: bool = False
    ) -> MailParked:
        return MailParked(
            **self._common(now), user=user, resume_deadline=resume_deadline, administrator=administrator
        )

    def paced(self, now: datetime, sender: str, goes_at: datetime) -> MailPaced:
        return MailPaced(**self._common(now), sender=sender, next_attempt_at=goes_at)

    def waiting(self, now: datetime, sender: str, wait: WaitForMailbox) -> MailPaced | MailWaitingForQuota:
        if wait.kind is WaitKind.PACED:
            return self.paced(now, sender, wait.until)
        return MailWaitingForQuota(
            **self._common(now),
            sender=sender,
            next_attempt_at=wait.until,
            smtp_reply=wait.smtp_reply,
            remedy=wait.remedy,
        )
