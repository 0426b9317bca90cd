"""The request and response models of job-gateway's API.

The use cases take and return them, so the SMTP listener speaks the same language as the
HTTP routes (a message received over SMTP becomes a `JobSubmission`, too). Messages on the
bus are not here: they are `fleetmail_contracts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from fleetmail_contracts.credentials import CredentialField
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tokens import AcquisitionFlow, GrantView, Provider
from fleetmail_contracts.transports import Transport
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import allowlists


def summarise(errors: Sequence[Mapping[str, Any]]) -> str:
    """A validation failure in one line: `to.0: value is not a valid e-mail address; …`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in list(errors)[:5])


def _network(cidr: str) -> str:
    return str(allowlists.parse(cidr))


Cidr = Annotated[str, AfterValidator(_network)]
"""A source-address range, normalised (192.0.2.15 → 192.0.2.15/32, an IPv4-mapped
::ffff:192.0.2.15 → 192.0.2.15/32); invalid ones are refused."""


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field(
        description="Stable URI of the kind of problem, https://fleetmail.dev/problems/<kind>",
        examples=["https://fleetmail.dev/problems/tenant-not-found"],
    )
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong this time, and what to do about it")
    instance: str = Field(description="The request's path")


class JobSubmission(BaseModel):
    """The `job` part of a job submission (a multipart part of type application/json)."""

    model_config = ConfigDict(extra="forbid")

    function: JobFunction = JobFunction.SCAN_TO_EMAIL
    job_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$", description="Idempotency key")
    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []
    subject: str | None = None
    body: str | None = None
    login_user: str | None = None
    requested_from: str | None = None
    document_url: str | None = None
    machine_address: str | None = None
    user_box: str | None = None
    user_box_number: str | None = None
    application: str | None = None
    event: str | None = None
    event_at: AwareDatetime | None = None
    counters: dict[str, int] | None = None
    counted_at: AwareDatetime | None = None
    sender_fax_number: str | None = None
    tsi: str | None = None
    received_at: AwareDatetime | None = None
    status: str | None = None
    status_at: AwareDatetime | None = None
    result: str | None = None
    destination: str | None = None
    pages: int | None = None
    transmitted_at: AwareDatetime | None = None
    error_code: str | None = None


class TsiRoute(BaseModel):
    """Where faxes from one sender (its TSI, the name or number its fax machine sends) go."""

    model_config = ConfigDict(extra="forbid")
    tsi: str = Field(min_length=1, max_length=64)
    recipients: list[str] = Field(min_length=1, max_length=100)


class TsiRecipients(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipients: list[str] = Field(min_length=1, max_length=100)


class TsiRoutingTable(BaseModel):
    """A tenant's TSI routing: a TSI Routing job without recipients goes to its TSI's route,
    else to `default`; with neither, it is refused. TSIs match ignoring case and spacing."""

    model_config = ConfigDict(extra="forbid")
    routes: list[TsiRoute] = Field(default=[], max_length=1000)
    default: list[str] = Field(
        default=[], max_length=100, description="Where a fax whose TSI has no route goes; empty: refused"
    )


class JobAccepted(BaseModel):
    job_id: str = Field(
        description="The job's id, as the device knows it (its own `job_id` when it chose one)"
    )
    delivery_id: str = Field(
        description="The id the job travels under: the Message-ID <delivery_id@fleetmail>, dead letters, traces"
    )
    status: str
    duplicate: bool = False


class JobStatus(BaseModel):
    job_id: str
    delivery_id: str
    tenant_id: str
    device_id: str
    function: JobFunction
    status: str
    submitted_at: datetime
    updated_at: datetime | None = None
    detail: str | None = None
    reason_code: str | None = None
    remedy: str | None = None
    smtp_reply: str | None = None
    message_id: str | None = None
    sender: str | None = None
    next_attempt_at: datetime | None = Field(
        default=None, description="When a paced or deferred job, or one waiting for quota, goes next"
    )

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Self:
        """The status record job-gateway keeps for a job, as the API shows it: its `_id` is
        the delivery id; `job_id` is the device's (records from before job ids were scoped
        by tenant have none: their `_id` was the device's)."""
        return cls(
            job_id=document.get("job_id") or document["_id"],
            delivery_id=document["_id"],
            **{
                k: v
                for k, v in document.items()
                if k in cls.model_fields and k not in ("job_id", "delivery_id")
            },
        )


class JobEvent(BaseModel):
    """One step of a job's delivery as the job's timeline shows it."""

    kind: str = Field(
        description="received, accepted, paced, waiting_for_quota, parked, deferred, sent, failed, resent"
    )
    at: datetime
    attempt: int | None = None
    sender: str | None = None
    user: str | None = Field(default=None, description="parked: whose sign-in the job waits for")
    smtp_reply: str | None = Field(default=None, description="The mail server's reply")
    detail: str | None = None
    reason_code: str | None = None
    remedy: str | None = None
    next_attempt_at: datetime | None = None
    message_id: str | None = None


class JobDetail(JobStatus):
    timeline: list[JobEvent] = Field(
        default=[], description="Received, then each mail event, oldest first (the newest 50 kept)"
    )


class JobSummary(BaseModel):
    since: datetime
    counts: dict[str, int]


class AdministratorToken(BaseModel):
    """[Refresh Tokens (Administrator)] as the device's OAuth 2.0 screen shows it."""

    address: str | None = Field(description="The tenant's administrator address (none: not set)")
    status: Literal["not_acquired", "acquired", "reauthorization_required", "revoked"] = Field(
        description="not_acquired: no token for that address yet ([Acquire]); acquired: it sends; "
        "reauthorization_required / revoked: the administrator signs in again"
    )


class TransportReadiness(BaseModel):
    """What the tenant's transport needs of the administrator's grant, and whether it has it."""

    transport: Transport
    needed: tuple[str, ...] = Field(
        description="The scopes the transport needs (app-only Microsoft: the application "
        "permissions an administrator consents to)"
    )
    missing: tuple[str, ...] = Field(description="Those the administrator's grant was not given")
    ready: bool | None = Field(
        description="true: the grant has what the transport needs; false: it does not (see detail); "
        "null: the grant cannot tell (app-only: the provider checks the administrator's consent "
        "at the first send)"
    )
    detail: str


class TokenStatus(BaseModel):
    """A tenant's tokens: the administrator's row, always there, every grant, and whether the
    administrator's grant has what the tenant's transport needs."""

    administrator: AdministratorToken
    grants: tuple[GrantView, ...]
    transport: TransportReadiness


class UserSignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=3, max_length=320, description="The login user's e-mail address")
    flow: AcquisitionFlow | None = None


class DeviceReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["user_logged_out", "auto_reset"]
    user: str | None = Field(default=None, min_length=3, max_length=320)


class DeviceEventAccepted(BaseModel):
    event_id: str


MAX_SMTP_RULES = 20
MAX_PATTERN = 200

Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN)]


class SmtpRule(BaseModel):
    """Messages a device sends over SMTP that become `function`: those matching every pattern
    given — globs, `*` any run of characters, `?` one, case ignored, the whole value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    function: JobFunction
    recipient: Pattern | None = Field(default=None, description="Any envelope recipient matches")
    subject: Pattern | None = Field(default=None, description="The Subject matches")
    sender: Pattern | None = Field(default=None, description="The From address matches")

    @model_validator(mode="after")
    def _a_condition(self) -> Self:
        if self.recipient is None and self.subject is None and self.sender is None:
            raise ValueError("a rule needs a recipient, subject or sender pattern")
        for pattern in (self.recipient, self.subject, self.sender):
            if pattern is not None and any(c in pattern for c in "\r\n\x00"):
                raise ValueError("a pattern holds no line break or NUL")
        return self


SmtpRules = Annotated[
    list[SmtpRule],
    Field(
        max_length=MAX_SMTP_RULES,
        description="What a message received over SMTP becomes, by its recipient, subject or From: "
        "the first rule that matches names the function; none: `smtp_function`",
    ),
]


class DeviceRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(default="", max_length=200)
    allow_cidrs: list[Cidr] = Field(
        default=[],
        max_length=16,
        description="Source addresses (CIDR) from which the device may send over SMTP without AUTH "
        "(devices that cannot AUTH, or send HELO instead of EHLO)",
    )
    smtp_function: JobFunction = Field(
        default=JobFunction.SCAN_TO_EMAIL, description="What a message received over SMTP becomes"
    )
    smtp_rules: SmtpRules = []

    @field_validator("device_id")
    @classmethod
    def not_only_dots(cls, device_id: str) -> str:
        """`.` and `..` would be no page's path (a URL's dot segments)."""
        if device_id in (".", ".."):
            raise ValueError("a device id is more than dots")
        return device_id


class DeviceChange(BaseModel):
    """What an administrator changes on a device; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    disabled: bool | None = None
    machine_address: str | None = Field(
        default=None,
        max_length=320,
        description="The machine's address for Internet Fax; must be the tenant's administrator address",
    )
    allow_cidrs: list[Cidr] | None = Field(default=None, max_length=16)
    smtp_function: JobFunction | None = None
    smtp_rules: SmtpRules | None = None


class DeviceView(BaseModel):
    device_id: str
    tenant_id: str
    name: str = ""
    disabled: bool = False
    machine_address: str | None = None
    allow_cidrs: list[str] = []
    smtp_function: str | None = None
    smtp_rules: list[SmtpRule] = []
    created_at: datetime | None = None
    attention: list[str] = Field(
        default=[],
        description="What needs an administrator's attention (an Internet Fax machine address "
        "that no longer matches the administrator address)",
    )

    @classmethod
    def of(cls, document: Mapping[str, Any], attention: list[str] | None = None) -> Self:
        """A stored device as administrators see it (never its secret's hash)."""
        fields = {k: document[k] for k in cls.model_fields if k in document and document[k] is not None}
        return cls(**fields | {"attention": attention or []})


class DeviceCredentials(BaseModel):
    device_id: str
    tenant_id: str
    secret: str = Field(description="Shown once; fleetmail stores only a keyed hash")


class CredentialsInput(BaseModel):
    """A tenant's secrets, write-only: given fields replace what is stored, `clear` removes."""

    model_config = ConfigDict(extra="forbid")
    microsoft_client_secret: str | None = Field(default=None, repr=False, max_length=1024)
    google_client_secret: str | None = Field(default=None, repr=False, max_length=1024)
    google_service_account: dict[str, Any] | None = Field(
        default=None,
        repr=False,
        description="The service account's JSON key file, as Google Cloud exports it",
    )
    smtp_username: str | None = Field(default=None, max_length=320)
    smtp_password: str | None = Field(default=None, repr=False, max_length=1024)
    webhook_secret: str | None = Field(default=None, repr=False, min_length=16, max_length=1024)
    clear: tuple[CredentialField, ...] = Field(
        default=(), description="Fields to remove; a field is given or cleared, not both"
    )

    @field_validator("clear")
    @classmethod
    def _given_or_cleared(cls, clear: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # Fields are validated in order: `info.data` holds every field declared above.
        for name in clear:
            if info.data.get(name) is not None:
                raise ValueError(f"{name} is both given and listed in clear: give it or clear it, not both")
        return clear


class ApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["fleet_admin", "operator"]
    tenant_ids: list[str] | None = Field(
        default=None, description="The tenants the key may reach; none: every tenant (operators only)"
    )


class ApiKeyView(BaseModel):
    key_id: str
    name: str
    role: str
    tenant_ids: list[str] | None = None
    created_at: datetime
    key: str | None = Field(default=None, description="Shown once, when the key is created")


class ApiKeyDeleted(BaseModel):
    deleted: bool


class QueueView(BaseModel):
    stream: str
    consumer: str
    pending: int
    unacknowledged: int
    redelivered: int


class DeadLetterView(BaseModel):
    sequence: int
    dead_letter_id: str
    job_id: str | None
    device_id: str | None
    function: str | None
    reason_code: str
    detail: str
    deliveries: int
    failed_at: datetime
    service: str


class OverviewTokenState(StrEnum):
    """The administrator token as the overview shows it."""

    ACQUIRED = "acquired"
    EXPIRING = "expiring"
    NOT_ACQUIRED = "not_acquired"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"


class OverviewToken(BaseModel):
    state: OverviewTokenState = Field(
        description="not_acquired: no token for the administrator address set now ([Acquire]); "
        "reauthorization_required: the provider refused it for good (or it was revoked): sign in "
        "again; expiring: acquired, and its predicted death is within the overview's horizon "
        "(FLEETMAIL_GATEWAY_OVERVIEW_EXPIRING_DAYS), which no keep-alive prevents; acquired: it sends"
    )
    expires_on: date | None = Field(
        default=None, description="The day an acquired token is predicted to die if nothing is done"
    )
    days_left: int | None = Field(default=None, description="Whole days until then (0: today)")


class AlertCount(BaseModel):
    critical: int = 0
    warning: int = 0
    info: int = 0


class OverviewRow(BaseModel):
    """One tenant on the fleet overview."""

    tenant_id: str
    display_name: str
    oauth_enabled: bool
    provider: Provider
    administrator_address: str | None
    token: OverviewToken
    alerts: AlertCount = Field(description="Unresolved alerts for administrators, by severity")
    users_waiting: int = Field(description="Login users whose token needs a new sign-in")
    failed_24h: int = Field(description="Jobs dead-lettered in the last 24 hours that are still failed")
    dead_lettered_24h: int = Field(
        description="Jobs dead-lettered in the last 24 hours, including those sent again since"
    )
    devices: int
    queued: int = Field(
        description="The tenant's jobs not finished yet (queued, deferred, paced, waiting for "
        "quota, parked for a sign-in), whatever their age: its queue's lag"
    )
    queued_by_status: dict[str, int] = Field(
        default_factory=dict,
        description="The same jobs by status (paced and waiting_for_quota: held by the mailbox's limits)",
    )
    needs_attention: bool = Field(
        description="OAuth 2.0 on without an acquired token, a critical or warning alert, a user "
        "to sign in, or a failed job in the last 24 hours"
    )


class OverviewTotals(BaseModel):
    """The figures of every tenant the key sees, whatever the filter and the page."""

    tenants: int
    needs_attention: int
    token_states: dict[OverviewTokenState, int]
    alerts: AlertCount
    users_waiting: int
    failed_24h: int
    dead_lettered_24h: int
    devices: int
    queued: int


class OverviewPage(BaseModel):
    """The fleet overview: one page of tenants, sorted and filtered, and the fleet's totals."""

    rows: list[OverviewRow]
    total: int = Field(description="Tenants that match the filter, on every page")
    page: int
    pages: int
    limit: int
    since: AwareDatetime = Field(description="Start of the 24 hours the job figures count")
    totals: OverviewTotals


class DeadLetterPage(BaseModel):
    """One page of a tenant's dead letters, newest first. A page reads a bounded stretch of
    the dead-letter stream, which every tenant shares: it may hold fewer letters than asked
    for, or none, and still be followed by more."""

    dead_letters: list[DeadLetterView]
    next: int | None = Field(
        description="Pass as `before` to read the next (older) page; null: this was the last"
    )


class DeadLetterResend(BaseModel):
    """Which of the tenant's dead letters to send again: all the filters given must match."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(
        default=None, max_length=64, description="Only dead letters of this `reason_code`"
    )
    since: AwareDatetime | None = Field(default=None, description="Only those that failed at or after this")
    until: AwareDatetime | None = Field(default=None, description="Only those that failed before this")
    before: int | None = Field(
        default=None, ge=1, description="The `next` of the previous call; none: from the newest"
    )
    limit: int = Field(default=100, ge=1, le=500, description="At most this many sent again or skipped")

    @model_validator(mode="after")
    def _a_range(self) -> Self:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("`since` must be before `until`")
        return self


class SkippedDeadLetter(BaseModel):
    sequence: int
    job_id: str | None
    why: Literal["documents_gone", "not_failed", "older_letter", "not_found"]
    detail: str


class DeadLetterResendReport(BaseModel):
    """What one bulk resend did. It reads a bounded stretch of the dead-letter stream: while
    `next` is not null, call again with it as `before` for older dead letters."""

    resent: int
    job_ids: list[str]
    skipped: list[SkippedDeadLetter]
    next: int | None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    smtp_min_tls: str | None = Field(
        description="The oldest TLS the SMTP listener accepts; null: no TLS port"
    )
