"""What delivering a job needs from the world, as `Protocol`s.

The real adapters are in `adapters/` (token-service over the bus, SMTP through aiosmtplib,
JetStream's KV buckets, Object Store and streams); in-memory fakes of each are in the test
suite, and both run the same contract tests. Each port raises only mail-service's errors
(`errors.py`) or, for the bus outside a delivery attempt, the runtime's `BusUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from io import BufferedIOBase
from typing import Protocol

from fleetmail_contracts.credentials import SmtpCredentialsReply
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_contracts.jobs import AttachmentRef, JobBase, JobFunction
from fleetmail_contracts.mail_events import (
    MailAccepted,
    MailDeferred,
    MailFailed,
    MailPaced,
    MailParked,
    MailSent,
    MailWaitingForQuota,
)
from fleetmail_contracts.tenants import SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import AccessTokenReply, Principal, TokenResource

from .domain.mime import MimeMessage

MailEvent = MailAccepted | MailSent | MailDeferred | MailFailed | MailParked | MailPaced | MailWaitingForQuota


@dataclass(frozen=True)
class Credentials:
    """How a sender signs in: XOAUTH2 with an access token, PLAIN/LOGIN with a username and
    password (OAuth 2.0 off), or not at all (neither given)."""

    address: str
    access_token: str | None = None
    password: str | None = None
    username: str | None = None

    def __repr__(self) -> str:
        return f"Credentials({self.address})"


@dataclass(frozen=True)
class SendResult:
    reply: str
    """The server's final reply to the message."""
    rejected: dict[str, str]
    """Recipients the server refused (the message went to the others), with its reply."""


class TokenClient(Protocol):
    """token-service, asked over the bus. A reply that is not a token is returned as it is
    (the deliverer decides what it means); no answer at all raises `TokenUnavailable`."""

    async def access_token(
        self,
        principal: Principal,
        *,
        force_refresh: bool,
        job_id: str | None,
        resource: TokenResource = TokenResource.SMTP,
    ) -> AccessTokenReply: ...

    async def smtp_credentials(self, tenant_id: str) -> SmtpCredentialsReply: ...


class MailTransport(Protocol):
    """Sends one message: over SMTP (to `server`) or through a mail API (Graph, Gmail: the
    API's own endpoint, `server` unused). Raises `TokenRejected` when the server refuses the
    access token, `MustWait` when an API throttles, a `TransientDeliveryError` for what may
    work later and a `PermanentDeliveryError` for what never will."""

    async def send(
        self, server: SmtpSettings, credentials: Credentials, message: MimeMessage, recipients: list[str]
    ) -> SendResult: ...

    async def close(self) -> None: ...


class SentItems(Protocol):
    """A mailbox's sent messages, looked up by Internet Message-ID (Graph's Sent Items, the
    Gmail API's search): None when the mailbox cannot tell (the token may not read it)."""

    async def sent(self, credentials: Credentials, internet_message_id: str) -> bool | None: ...


class TenantReader(Protocol):
    """Tenant settings (job-gateway writes them). `get` raises the runtime's `UnknownTenant`."""

    async def get(self, tenant_id: str) -> TenantSettings: ...

    def cached(self, tenant_id: str) -> TenantSettings | None: ...


class AttachmentStore(Protocol):
    """The documents jobs refer to. `fetch` writes one into `into`; it raises
    `InvalidJob(ATTACHMENT_MISSING)` when the document is gone and `AttachmentsUnavailable`
    when the store cannot be read now."""

    async def fetch(self, attachment: AttachmentRef, into: BufferedIOBase) -> None: ...

    async def discard(self, attachments: Sequence[AttachmentRef]) -> None:
        """Delete them for good (one gone already is no error); `AttachmentsUnavailable` when
        the store cannot be written now."""
        ...


class DeliveryLedger(Protocol):
    """Which jobs the SMTP server already accepted, so a redelivered job is not sent twice."""

    async def already_delivered(self, job_id: str) -> bool: ...

    async def record(self, job_id: str, message_id: str) -> None:
        """Idempotent: recording a job already recorded is not an error."""
        ...


class EventPublisher(Protocol):
    """Mail events (deduplicated by `event_id`) and dead letters, on their streams."""

    async def publish(self, event: MailEvent) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...


class Parking(Protocol):
    """Jobs waiting for their login user's sign-in, or for the administrator's first one."""

    async def park(
        self, job: JobBase, function: JobFunction, user: str, job_json: bytes, *, administrator: bool = False
    ) -> datetime:
        """Keep the job until `user` signs in (with `administrator`: until the tenant's
        administrator token is acquired); returns the deadline after which it fails."""
        ...

    async def resume_user(self, tenant_id: str, user: str) -> int:
        """`user` signed in: their parked jobs go back to the queue; returns how many."""
        ...

    async def resume_administrator(self, tenant_id: str) -> int:
        """The tenant's administrator token was acquired: the jobs that waited for it go back
        to the queue; returns how many."""
        ...

    async def put_back(
        self, job_json: bytes, function: JobFunction, copy_id: str, headers: Mapping[str, str]
    ) -> None:
        """The job on the queue again as a new message under `copy_id`, with `headers`."""
        ...


class JobMessage(Protocol):
    """One delivery of a job command from the work queue, and what can be answered to it."""

    @property
    def subject(self) -> str: ...

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def attempt(self) -> int:
        """1 for the first delivery, 2 for the first redelivery, …"""
        ...

    async def ack(self) -> None: ...

    async def nack(self, delay_s: float) -> None:
        """Deliver it again after `delay_s`."""
        ...
