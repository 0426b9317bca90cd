"""Mail events: what happened to a job's delivery. Published by mail-service."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from ._base import Contract, Timestamp
from .jobs import JobFunction
from .streams import MAIL_EVENT_PREFIX


class FailureReason(StrEnum):
    """Why a job failed for good; stable codes the gateway, notifier and CLI branch on."""

    SMTP_AUTH_DISABLED = "smtp_auth_disabled"
    BASIC_AUTH_REFUSED = "basic_auth_refused"
    SEND_AS_DENIED = "send_as_denied"
    AUTHENTICATION_FAILED = "authentication_failed"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    CONFIGURATION_ERROR = "configuration_error"
    AUTHORIZATION_TIMEOUT = "authorization_timeout"
    RECIPIENTS_REJECTED = "recipients_rejected"
    MESSAGE_TOO_LARGE = "message_too_large"
    MAILBOX_FULL = "mailbox_full"
    SENDING_QUOTA_EXCEEDED = "sending_quota_exceeded"
    SENDER_NOT_ALLOWED = "sender_not_allowed"
    INVALID_JOB = "invalid_job"
    ATTACHMENT_MISSING = "attachment_missing"
    TENANT_UNKNOWN = "tenant_unknown"
    RETRIES_EXHAUSTED = "retries_exhausted"
    SMTP_REJECTED = "smtp_rejected"


class MailEventBase(Contract):
    event_id: str = Field(min_length=1, max_length=64)
    job_id: str
    tenant_id: str
    device_id: str
    function: JobFunction
    occurred_at: Timestamp


class MailAccepted(MailEventBase):
    """mail-service took the job and began delivery."""

    kind: Literal["accepted"] = "accepted"
    sender: str | None = None


class MailSent(MailEventBase):
    kind: Literal["sent"] = "sent"
    sender: str
    message_id: str
    smtp_reply: str
    accepted_recipients: tuple[str, ...] = ()
    rejected_recipients: tuple[str, ...] = ()


class MailDeferred(MailEventBase):
    kind: Literal["deferred"] = "deferred"
    attempt: int = Field(ge=1)
    next_attempt_at: Timestamp
    reason: str


class MailPaced(MailEventBase):
    """The job waits for its turn at the mailbox's sending rate or concurrent submissions."""

    kind: Literal["paced"] = "paced"
    sender: str
    next_attempt_at: Timestamp


class MailWaitingForQuota(MailEventBase):
    """The mailbox's daily sending quota is used up: the job goes when the window allows."""

    kind: Literal["waiting_for_quota"] = "waiting_for_quota"
    sender: str
    next_attempt_at: Timestamp
    smtp_reply: str | None = None
    remedy: str | None = None


class MailFailed(MailEventBase):
    kind: Literal["failed"] = "failed"
    reason_code: FailureReason
    detail: str
    remedy: str | None = None
    smtp_reply: str | None = None


class MailParked(MailEventBase):
    """The job waits for a grant: a login user's (the device should show that user the OAuth
    screen) or, with `administrator`, the administrator's (someone must [Acquire] it)."""

    kind: Literal["parked"] = "parked"
    user: str
    """The address whose sign-in the job waits for."""
    authorization_required: bool = True
    resume_deadline: Timestamp
    administrator: bool = False


MAIL_EVENTS: dict[str, type[MailEventBase]] = {
    "accepted": MailAccepted,
    "sent": MailSent,
    "deferred": MailDeferred,
    "paced": MailPaced,
    "waiting_for_quota": MailWaitingForQuota,
    "failed": MailFailed,
    "parked": MailParked,
}


def mail_event_subject(kind: str) -> str:
    return f"{MAIL_EVENT_PREFIX}{kind}"


MAIL_EVENTS_WILDCARD = f"{MAIL_EVENT_PREFIX}*"
