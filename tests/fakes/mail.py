"""In-memory fakes of mail-service's ports (`mail_service.ports`), for unit tests.

Each behaves as the real adapter does where the contract tests (`tests/contracts/mail.py`)
look: the transport as the SMTP emulator's server, the ledger as the KV bucket, the
publisher as the streams (one copy per event id).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BufferedIOBase
from typing import TypeVar

from fleetmail_contracts.credentials import SmtpCredentialsReply
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_contracts.jobs import AttachmentRef, JobBase, JobFunction
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import AccessTokenOutcome, AccessTokenReply, Principal, TokenResource
from fleetmail_runtime.bus import BusUnavailable
from fleetmail_runtime.smtp_replies import NOT_AUTHENTICATED
from fleetmail_runtime.tenants import UnknownTenant
from mail_service.adapters.smtp import error_of_reply
from mail_service.domain.limits import MailboxState
from mail_service.domain.mime import MimeMessage
from mail_service.errors import AttachmentsUnavailable, InvalidJob, TokenUnavailable
from mail_service.ports import (
    AttachmentStore,
    Credentials,
    DeliveryLedger,
    EventPublisher,
    JobMessage,
    MailEvent,
    MailTransport,
    Parking,
    SendResult,
    TenantReader,
    TokenClient,
)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeTenants:
    def __init__(self, *tenants: TenantSettings) -> None:
        self.tenants = {t.tenant_id: t for t in tenants}

    async def get(self, tenant_id: str) -> TenantSettings:
        try:
            return self.tenants[tenant_id]
        except KeyError:
            raise UnknownTenant(f"no tenant {tenant_id!r}") from None

    def cached(self, tenant_id: str) -> TenantSettings | None:
        return self.tenants.get(tenant_id)


@dataclass(frozen=True)
class TokenRequest:
    principal: Principal
    force_refresh: bool
    job_id: str | None
    resource: TokenResource = TokenResource.SMTP


class FakeTokenClient:
    """token-service: a fresh token for every request (`token-1`, `token-2`, …) unless a reply
    is queued for the principal's address; `down` makes it not answer at all."""

    def __init__(self) -> None:
        self.requests: list[TokenRequest] = []
        self.queued: dict[str, list[AccessTokenReply]] = {}
        self.credentials: dict[str, SmtpCredentialsReply] = {}
        self.credential_requests: list[str] = []
        self.down = False
        self._serial = itertools.count(1)

    def queue(self, address: str, *replies: AccessTokenReply) -> None:
        self.queued.setdefault(address.casefold(), []).extend(replies)

    async def access_token(
        self,
        principal: Principal,
        *,
        force_refresh: bool,
        job_id: str | None,
        resource: TokenResource = TokenResource.SMTP,
    ) -> AccessTokenReply:
        self.requests.append(TokenRequest(principal, force_refresh, job_id, resource))
        if self.down:
            raise TokenUnavailable("token-service did not answer: TimeoutError")
        queued = self.queued.get(principal.address.casefold())
        if queued:
            return queued.pop(0)
        return AccessTokenReply(
            outcome=AccessTokenOutcome.GRANTED, access_token=f"token-{next(self._serial)}"
        )

    async def smtp_credentials(self, tenant_id: str) -> SmtpCredentialsReply:
        self.credential_requests.append(tenant_id)
        if self.down:
            raise TokenUnavailable("token-service did not answer: TimeoutError")
        return self.credentials.get(tenant_id, SmtpCredentialsReply())


@dataclass(frozen=True)
class Received:
    """A message the fake server accepted."""

    auth_user: str | None
    access_token: str | None
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes


@dataclass
class FakeMailServer:
    """What a submission server knows and does: mailboxes, valid tokens, queued faults."""

    mailboxes: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    faults: list[tuple[str, int, str]] = field(default_factory=list)
    rejected_recipients: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    require_auth: bool = True

    def take_fault(self, stage: str) -> tuple[int, str] | None:
        for i, (at, code, text) in enumerate(self.faults):
            if at == stage:
                del self.faults[i]
                return code, text
        return None


class FakeTransport:
    """Sends to a `FakeMailServer`, refusing and failing as the SMTP emulator does."""

    def __init__(self, server: FakeMailServer | None = None) -> None:
        self.server = server or FakeMailServer()
        self.attempts: list[Credentials] = []
        self.closed = False

    async def send(
        self, server: SmtpSettings, credentials: Credentials, message: MimeMessage, recipients: list[str]
    ) -> SendResult:
        self.attempts.append(credentials)
        state = self.server
        authenticated = self._authenticate(credentials)
        if (fault := state.take_fault("mail")) is not None:
            raise error_of_reply(*fault, during_auth=False)
        if state.require_auth and not authenticated:
            code, text = NOT_AUTHENTICATED.code, NOT_AUTHENTICATED.text
            raise error_of_reply(code, text, during_auth=False)
        rejected: dict[str, str] = {}
        refusal = (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")
        for recipient in recipients:
            if (fault := state.take_fault("rcpt")) is not None:
                rejected[recipient] = f"{fault[0]} {fault[1]}"
                refusal = fault
            elif recipient.casefold() in state.rejected_recipients:
                rejected[recipient] = f"{refusal[0]} {refusal[1]}"
        if len(rejected) == len(recipients):
            raise error_of_reply(*refusal, during_auth=False)
        if (fault := state.take_fault("data")) is not None:
            raise error_of_reply(*fault, during_auth=False)
        state.received.append(
            Received(
                credentials.username or credentials.address if authenticated else None,
                credentials.access_token,
                credentials.address,
                tuple(r for r in recipients if r not in rejected),
                await message.to_bytes(),
            )
        )
        return SendResult("250 2.0.0 OK <fake@fleetmail.test>", rejected)

    def _authenticate(self, credentials: Credentials) -> bool:
        state = self.server
        if credentials.access_token is not None:
            if (fault := state.take_fault("auth")) is not None:
                raise error_of_reply(*fault, during_auth=True)
            if credentials.access_token not in state.tokens:
                raise error_of_reply(535, "5.7.3 Authentication unsuccessful", during_auth=True)
            return True
        if credentials.password is not None:
            user = (credentials.username or credentials.address).casefold()
            if state.mailboxes.get(user) != credentials.password:
                raise error_of_reply(535, "5.7.3 Authentication unsuccessful", during_auth=True)
            return True
        return False

    async def close(self) -> None:
        self.closed = True


class FakeAttachments:
    def __init__(self, documents: Mapping[str, bytes] | None = None) -> None:
        self.documents = dict(documents or {})
        self.discarded: list[str] = []
        self.down = False

    async def fetch(self, attachment: AttachmentRef, into: BufferedIOBase) -> None:
        if self.down:
            raise AttachmentsUnavailable("the fleetmail_attachments object store cannot be read")
        data = self.documents.get(attachment.object_name)
        if data is None:
            raise InvalidJob(
                f"attachment {attachment.filename} is no longer stored", FailureReason.ATTACHMENT_MISSING
            )
        into.write(data)

    async def discard(self, attachments: Sequence[AttachmentRef]) -> None:
        if self.down:
            raise AttachmentsUnavailable("the fleetmail_attachments object store cannot be written")
        for ref in attachments:
            self.documents.pop(ref.object_name, None)
            self.discarded.append(ref.object_name)


class FakeLedger:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    async def already_delivered(self, job_id: str) -> bool:
        return job_id in self.records

    async def record(self, job_id: str, message_id: str) -> None:
        self.records.setdefault(job_id, message_id)


class FakeEventPublisher:
    """The events and dead letters streams; an event id seen before is dropped, as JetStream
    drops a duplicate `Nats-Msg-Id`. `down` makes every publish fail as a bus outage does."""

    def __init__(self) -> None:
        self.events: list[MailEvent] = []
        self.dead_letters: list[DeadLetter] = []
        self.down = False

    async def publish(self, event: MailEvent) -> None:
        if self.down:
            raise BusUnavailable("FLEETMAIL_EVENTS did not take the message", TimeoutError())
        if all(e.event_id != event.event_id for e in self.events):
            self.events.append(event)

    async def dead_letter(self, letter: DeadLetter) -> None:
        if self.down:
            raise BusUnavailable("FLEETMAIL_DLQ did not take the message", TimeoutError())
        self.dead_letters.append(letter)

    def kinds(self, job_id: str) -> list[str]:
        return [e.kind for e in self.events if e.job_id == job_id]


@dataclass(frozen=True)
class ParkedJob:
    job: JobBase
    function: JobFunction
    user: str
    job_json: bytes
    deadline: datetime
    administrator: bool = False


class FakeParking:
    def __init__(self, clock: FakeClock, timeout: timedelta = timedelta(minutes=15)) -> None:
        self.clock = clock
        self.timeout = timeout
        self.parked: list[ParkedJob] = []
        self.resumed: list[ParkedJob] = []
        self.put_back_as: list[str] = []
        self.put_back_headers: list[dict[str, str]] = []

    async def park(
        self, job: JobBase, function: JobFunction, user: str, job_json: bytes, *, administrator: bool = False
    ) -> datetime:
        deadline = self.clock() + self.timeout
        self.parked.append(ParkedJob(job, function, user, job_json, deadline, administrator))
        return deadline

    async def resume_user(self, tenant_id: str, user: str) -> int:
        return self._resume(
            lambda p: (
                p.job.tenant_id == tenant_id and not p.administrator and p.user.casefold() == user.casefold()
            )
        )

    async def resume_administrator(self, tenant_id: str) -> int:
        return self._resume(lambda p: p.job.tenant_id == tenant_id and p.administrator)

    def _resume(self, whose: Callable[[ParkedJob], bool]) -> int:
        mine = [p for p in self.parked if whose(p)]
        self.parked = [p for p in self.parked if p not in mine]
        self.resumed.extend(mine)
        return len(mine)

    async def put_back(
        self, job_json: bytes, function: JobFunction, copy_id: str, headers: Mapping[str, str]
    ) -> None:
        self.put_back_as.append(copy_id)
        self.put_back_headers.append(dict(headers))


class FakeJobMessage:
    """One delivery of a job command; remembers how it was answered."""

    def __init__(
        self,
        body: bytes,
        *,
        attempt: int = 1,
        subject: str = "fleetmail.jobs.v1.scan_to_email",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._body = body
        self._attempt = attempt
        self._subject = subject
        self._headers = {"Nats-Msg-Id": "job", "content-type": "application/json", **(headers or {})}
        self.answers: list[str] = []
        self.nack_delay_s: float | None = None

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def body(self) -> bytes:
        return self._body

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def attempt(self) -> int:
        return self._attempt

    async def ack(self) -> None:
        self.answers.append("ack")

    async def nack(self, delay_s: float) -> None:
        self.answers.append("nack")
        self.nack_delay_s = delay_s


T = TypeVar("T")


class FakeLimitsStore:
    """Mailbox limit states in memory (the KV bucket's compare-and-set is trivially won)."""

    def __init__(self) -> None:
        self.states: dict[str, MailboxState] = {}

    async def change(self, key: str, change: Callable[[MailboxState], T]) -> T:
        state = MailboxState.from_json(self.states[key].to_json()) if key in self.states else MailboxState()
        result = change(state)
        self.states[key] = state
        return result


def payload_of(letter: DeadLetter) -> bytes:
    return base64.b64decode(letter.payload_b64)


# mypy checks here that every fake satisfies its port.
_PORTS: tuple[
    TokenClient,
    MailTransport,
    TenantReader,
    AttachmentStore,
    DeliveryLedger,
    EventPublisher,
    Parking,
    JobMessage,
] = (
    FakeTokenClient(),
    FakeTransport(),
    FakeTenants(),
    FakeAttachments(),
    FakeLedger(),
    FakeEventPublisher(),
    FakeParking(FakeClock()),
    FakeJobMessage(b"{}"),
)
