"""job-gateway's rules, with no I/O: who may do what, which sign-in a tenant starts with,
what a job may contain, and how mail events move a job's status.

Every function here is pure (no clock, no network, no database); the use cases call them
and the unit tests exercise them directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from fleetmail_contracts.addresses import UNSAFE, is_address
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.mail_events import MAIL_EVENTS
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AcquisitionFlow, GrantStatus, GrantView, PrincipalKind, Provider
from fleetmail_contracts.transports import Transport, missing_scopes, needed_scopes

from .errors import (
    AttachmentTypeRefused,
    FaxDocumentRequired,
    InvalidAddress,
    InvalidRequest,
    MachineAddressRefused,
    OutsideTenantDomains,
    TooManyRecipients,
    TsiNotRouted,
    UnsafeHeader,
)
from .schemas import (
    AdministratorToken,
    JobSubmission,
    SmtpRule,
    TokenStatus,
    TransportReadiness,
    TsiRoutingTable,
)

# --- devices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    device_id: str
    tenant_id: str
    machine_address: str | None = None
    """Its Internet Fax sender, set by an administrator (checked against the administrator address)."""
    session_users: frozenset[str] | None = None
    """The users (casefolded) whose sign-in or jobs came from it since its last auto reset, as
    read when the device signed in; None when not read (a device found by its address)."""
    signed_in_users: frozenset[str] | None = None
    """The users (casefolded) whose sign-in at this device succeeded since its last auto reset
    (read alike): whose grant a message over SMTP From them may use."""


@dataclass(frozen=True)
class DeviceLogin:
    """Who a session belongs to, once the device proved it."""

    device: Device
    function: JobFunction
    by: str  # "auth" or "address"
    rules: tuple[SmtpRule, ...] = ()
    """Its SMTP rules: which messages become which function (`smtp_rules`)."""


def check_machine_address(tenant: TenantSettings, machine_address: str) -> None:
    """Internet Fax is sent as the machine's address, and only the administrator's grant can
    send it: the machine address must be the tenant's administrator address."""
    administrator = tenant.administrator_address
    if administrator is None or machine_address.casefold() != administrator.casefold():
        raise MachineAddressRefused(
            "Internet Fax is sent as the machine's address, which must be the tenant's administrator "
            f"address ({administrator or 'none set'}): only that mailbox's grant can send it"
        )


def device_attention(tenant: TenantSettings, machine_address: str | None) -> list[str]:
    """What an administrator must fix on a device: its Internet Fax machine address, once
    the tenant's administrator address changed, no longer matches it (the device's faxes
    cannot be sent until it does)."""
    administrator = tenant.administrator_address
    if machine_address is None or (
        administrator is not None and machine_address.casefold() == administrator.casefold()
    ):
        return []
    return [
        f"its Internet Fax machine address {machine_address} is not the administrator address "
        f"({administrator or 'none set'}): set the machine address to it, or Internet Fax jobs fail"
    ]


def device_matches(device: Mapping[str, Any], search: str) -> bool:
    """A stored device whose id, name, Internet Fax machine address or an allowlisted source
    range holds `search` (case ignored)."""
    wanted = search.strip().casefold()
    fields = [device.get("device_id"), device.get("name"), device.get("machine_address")]
    fields += device.get("allow_cidrs") or []
    return any(wanted in str(value).casefold() for value in fields if value)


# --- administrators ----------------------------------------------------------------------


class Role(StrEnum):
    """`owner`: the bootstrap key, everything, including creating tenants and managing keys;
    `fleet_admin`: reads and changes the tenants it is given; `operator`: reads the tenants
    it is given (or all, when given none) and changes nothing."""

    OWNER = "owner"
    FLEET_ADMIN = "fleet_admin"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Administrator:
    key_id: str
    role: Role
    tenant_ids: tuple[str, ...] | None
    """None: every tenant (owner; an operator given no tenants)."""


class Access(StrEnum):
    """What a route does, as far as keys are concerned."""

    READ = "read"
    WRITE = "write"
    MANAGE_KEYS = "manage_keys"


def refusal(admin: Administrator, access: Access, tenant_id: str | None) -> str | None:
    """Why this administrator may not do this (to this tenant, or across tenants when
    `tenant_id` is None), or None when allowed."""
    if admin.role is Role.OWNER:
        return None
    if access is Access.MANAGE_KEYS:
        return "only the owner key manages API keys"
    if access is Access.WRITE and admin.role is Role.OPERATOR:
        return "an operator key is read-only"
    if tenant_id is None:
        # Reading a list across tenants: the route shows only the key's tenants.
        if access is Access.READ:
            return None
        return "this key is limited to its tenants: use the tenant's own routes"
    if admin.tenant_ids is not None and tenant_id not in admin.tenant_ids:
        return f"this key has no access to tenant {tenant_id!r}"
    return None


class Tenanted(Protocol):
    @property
    def tenant_id(self) -> str: ...


T = TypeVar("T", bound=Tenanted)


def visible_tenants(admin: Administrator, tenants: Iterable[T]) -> list[T]:
    """The tenants this key may see (their settings, or the overview's digests), by id."""
    return sorted(
        (t for t in tenants if admin.tenant_ids is None or t.tenant_id in admin.tenant_ids),
        key=lambda t: t.tenant_id,
    )


def sees_the_whole_fleet(admin: Administrator) -> bool:
    """Whether this key reaches every tenant: only such a key sees what all tenants share
    (the queues' lag counts every tenant's jobs)."""
    return admin.tenant_ids is None


def redact_url(url: str) -> str:
    """The URL without the user name and password it may carry (`http://user:pw@proxy:3128`
    → `http://redacted@proxy:3128`): where it goes stays visible."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "redacted"
    if parts.username is None and parts.password is None:
        return url
    netloc = f"redacted@{host or ''}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def as_seen_by(admin: Administrator, tenant: TenantSettings) -> TenantSettings:
    """A tenant's settings as this key may read them: a read-only operator key does not see
    credentials in the proxy URL."""
    if admin.role is not Role.OPERATOR or tenant.proxy_url is None:
        return tenant
    return tenant.model_copy(update={"proxy_url": redact_url(tenant.proxy_url)})


# --- sign-ins ----------------------------------------------------------------------------


def default_sign_in_flow(tenant: TenantSettings, kind: PrincipalKind) -> AcquisitionFlow:
    """The sign-in a tenant starts with when none is asked for: app-only for the administrator
    of a tenant that sends app-only, otherwise a device code (Microsoft's default) or a
    browser sign-in (the only one Google allows for Gmail)."""
    if kind is PrincipalKind.ADMINISTRATOR and tenant.identity.app_only:
        return AcquisitionFlow.APP_ONLY
    if tenant.provider is Provider.GOOGLE:
        return AcquisitionFlow.AUTHORIZATION_CODE
    return AcquisitionFlow.DEVICE_CODE


def check_principal_address(address: str) -> None:
    """A grant's address becomes a token's subject and a mail header: no line breaks, an @."""
    if UNSAFE.search(address) or "@" not in address.strip("@") or not 3 <= len(address) <= 320:
        raise InvalidAddress(f"not an e-mail address: {address[:80]!r}")


# --- jobs --------------------------------------------------------------------------------


def check_submission(submission: JobSubmission, max_recipients: int) -> None:
    """Addresses that are addresses, not too many recipients, header fields without line
    breaks: checked before anything is stored."""
    recipients = submission.to + submission.cc + submission.bcc
    named = [submission.login_user, submission.requested_from, submission.machine_address]
    for address in [*recipients, *(a for a in named if a)]:
        if not UNSAFE.search(address) and not is_address(address):
            raise InvalidAddress(f"not an e-mail address: {address[:100]!r}")
    if len(recipients) > max_recipients:
        raise TooManyRecipients(f"at most {max_recipients}")
    for value in [
        *recipients,
        submission.subject or "",
        submission.login_user or "",
        submission.requested_from or "",
        submission.sender_fax_number or "",  # both go into the subject
        submission.tsi or "",
    ]:
        if UNSAFE.search(value):
            raise UnsafeHeader("line breaks and NUL are not allowed in header fields")


def check_login_user(tenant: TenantSettings | None, login_user: str | None) -> None:
    """A job's login user is one of the tenant's people (an address in its mail domains):
    their grant sends the job and, while it waits for their sign-in, they are asked by
    e-mail — through the operator's relay, which must never mail an address a device chose
    outside the tenant."""
    if login_user is None or (tenant is not None and tenant.accepts_sign_in(login_user)):
        return
    listed = ", ".join(tenant.effective_mail_domains()) if tenant is not None else ""
    raise OutsideTenantDomains(
        f"the login user {login_user[:100]!r} is not an address in the tenant's mail domains "
        f"({listed or 'none'}): only the tenant's own people send as login users"
    )


FAX_FUNCTIONS = frozenset({JobFunction.FORWARD_TX, JobFunction.TSI_ROUTING})
"""A received fax forwarded by e-mail: the message is for its document."""


def check_fax_document(function: JobFunction, attachments: int) -> None:
    if function in FAX_FUNCTIONS and attachments == 0:
        raise FaxDocumentRequired(f"a {function.value} job forwards a received fax: attach the fax document")


def tsi_key(tsi: str) -> str:
    """How TSIs are matched: case and spacing aside ("ACME  Sales" is "acme sales")."""
    return " ".join(tsi.split()).casefold()


def check_tsi_routing(table: TsiRoutingTable, max_recipients: int) -> None:
    """Every recipient an address, no TSI listed twice, no list over the recipient limit."""
    seen: set[str] = set()
    lists = [("default", table.default), *((f"route {r.tsi!r}", r.recipients) for r in table.routes)]
    for route in table.routes:
        key = tsi_key(route.tsi)
        if not key or UNSAFE.search(route.tsi):
            raise InvalidRequest(f"not a TSI: {route.tsi[:64]!r}")
        if key in seen:
            raise InvalidRequest(f"the TSI {route.tsi!r} is listed twice")
        seen.add(key)
    for where, recipients in lists:
        if len(recipients) > max_recipients:
            raise TooManyRecipients(f"{where}: at most {max_recipients} recipients")
        for address in recipients:
            if UNSAFE.search(address) or not is_address(address):
                raise InvalidAddress(f"{where}: not an e-mail address: {address[:100]!r}")


def route_by_tsi(table: TsiRoutingTable, tsi: str | None) -> list[str]:
    """Where a fax of this TSI goes: its route, else the table's default."""
    if tsi is not None:
        key = tsi_key(tsi)
        for route in table.routes:
            if tsi_key(route.tsi) == key:
                return list(route.recipients)
    if table.default:
        return list(table.default)
    raise TsiNotRouted(
        f"the job has no recipients and the tenant's TSI routing table has no route for "
        f"{'TSI ' + repr(tsi) if tsi else 'a fax without a TSI'} and no default: add a route "
        "(PUT /v1/admin/tenants/{tenant}/tsi-routing/routes/{tsi}) or send the job with recipients"
    )


def check_attachment_type(filename: str | None, content_type: str | None, allowed: Sequence[str]) -> None:
    """Devices send scans, faxes and reports: other types are refused unless `*` is allowed."""
    kind = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if "*" not in allowed and kind not in allowed:
        raise AttachmentTypeRefused(
            f"{filename}: {kind} is not accepted (FLEETMAIL_GATEWAY_ALLOWED_ATTACHMENT_TYPES)"
        )


def retry_after_s(wait_s: float) -> int:
    """The whole seconds a device is told to wait: never 0, rounded up."""
    return max(1, round(wait_s + 0.5))


def scoped_job_id(tenant_id: str, job_id: str) -> str:
    """The id a job travels under (the command's `job_id`, `Nats-Msg-Id`, the Message-ID
    `<…@fleetmail>`, mail events, dead letters) when its device chose the job id: job ids are
    the tenant's own, so the same id from two tenants is two jobs, and no device can name —
    or collide with — another tenant's job."""
    return hashlib.sha256(f"{tenant_id}\n{job_id}".encode()).hexdigest()[:32]


def smtp_job_id(tenant_id: str, device_id: str, message_id: str) -> str:
    """A device that resends after a lost reply sends the same Message-ID: the same job (of
    this tenant's device: another tenant's device of the same id is another device)."""
    return hashlib.sha256(f"{tenant_id}\n{device_id}\n{message_id}".encode()).hexdigest()[:32]


def legacy_smtp_job_id(device_id: str, message_id: str) -> str:
    """The id a message got before job ids were scoped by tenant: a resend of a message
    queued before an upgrade is still the same job (when it is the same tenant's)."""
    return hashlib.sha256(f"{device_id}|{message_id}".encode()).hexdigest()[:32]


# --- job status --------------------------------------------------------------------------

FINAL_STATUSES = frozenset({"sent", "failed"})
"""Once a job is here, later events do not change it (a late `deferred` never overwrites `sent`)."""

UNFINISHED_STATUSES = frozenset({"queued", *MAIL_EVENTS}) - FINAL_STATUSES
"""A job here is still to be sent: queued, accepted, deferred, paced, waiting for quota, parked."""

_KEPT_FIELDS = ("detail", "remedy", "smtp_reply", "message_id", "reason_code", "sender", "next_attempt_at")


TIMELINE_LENGTH = 50
"""A job's record keeps its newest 50 events (a job retried all day stays one document)."""
_TIMELINE_FIELDS = (
    "attempt",
    "sender",
    "user",
    "smtp_reply",
    "detail",
    "reason_code",
    "remedy",
    "next_attempt_at",
    "message_id",
)


@dataclass(frozen=True)
class StatusUpdate:
    """What one mail event changes in its job's status record, and the entry it adds to the
    job's timeline (`entry`: kind, time and what the event said, e.g. the server's reply)."""

    job_id: str
    status: str
    at: datetime
    fields: Mapping[str, Any] = field(default_factory=dict)
    entry: Mapping[str, Any] | None = None


def status_update(event: Mapping[str, Any]) -> StatusUpdate:
    """A mail event (`queued`, `deferred`, `sent`, `failed`, …) as a status change."""
    fields: dict[str, Any] = {key: event[key] for key in _KEPT_FIELDS if event.get(key) is not None}
    if event.get("reason") and "detail" not in fields:
        fields["detail"] = event["reason"]
    at = datetime.fromisoformat(event["occurred_at"])
    if event["kind"] == "failed":
        # mail-service writes a dead letter with every `failed` event: when, for the overview.
        fields["dead_lettered_at"] = at
    entry = {key: event[key] for key in _TIMELINE_FIELDS if event.get(key) is not None}
    if event.get("reason") and "detail" not in entry:
        entry["detail"] = event["reason"]
    return StatusUpdate(
        event["job_id"], event["kind"], at, fields, {"kind": event["kind"], "at": at, **entry}
    )


def may_change(current_status: str) -> bool:
    """Status only moves forward: a final status stays."""
    return current_status not in FINAL_STATUSES


def token_status(tenant: TenantSettings, grants: Sequence[GrantView]) -> TokenStatus:
    """The tenant's tokens with the administrator's row as the device shows it: "Not acquired"
    until a grant exists for the administrator address the tenant has now."""
    address = tenant.administrator_address
    mine = [
        g
        for g in grants
        if g.principal.kind is PrincipalKind.ADMINISTRATOR
        and address is not None
        and g.principal.address.casefold() == address.casefold()
    ]
    status = "not_acquired"
    if mine:
        status = "acquired" if mine[0].status is GrantStatus.ACTIVE else mine[0].status.value
    return TokenStatus(
        administrator=AdministratorToken(address=address, status=status),
        grants=tuple(grants),
        transport=transport_readiness(tenant, mine[0] if mine else None),
    )


APP_ONLY_CONSENT = {
    Provider.MICROSOFT: "an administrator grants the app the application permission(s) {needed} in Entra "
    "(Grant admin consent) and limits it to the sending mailboxes (RBAC for Applications or an "
    "application access policy); Microsoft checks it at the first send",
    Provider.GOOGLE: "a Workspace administrator authorises the service account's client id for {needed} "
    "(domain-wide delegation); Google checks it at the first send",
}


def transport_readiness(tenant: TenantSettings, grant: GrantView | None) -> TransportReadiness:
    """Whether the administrator's grant has the scopes the tenant's transport needs: a grant
    taken for another transport lacks them until the administrator signs in again."""
    transport, provider = tenant.transport, tenant.provider
    app_only = grant.flow is AcquisitionFlow.APP_ONLY if grant is not None else tenant.identity.app_only
    needed = needed_scopes(provider, transport, app_only)
    listed = ", ".join(needed)

    def answer(missing: tuple[str, ...], ready: bool | None, detail: str) -> TransportReadiness:
        return TransportReadiness(
            transport=transport, needed=needed, missing=missing, ready=ready, detail=detail
        )

    if not tenant.oauth_enabled:
        if transport is Transport.SMTP:
            return TransportReadiness(
                transport=transport,
                needed=(),
                missing=(),
                ready=True,
                detail="OAuth 2.0 is off: the tenant sends over SMTP with its stored credentials",
            )
        return answer(
            needed, False, f"{transport.value} sends only with OAuth 2.0 on: turn it on, then [Acquire]"
        )
    if grant is None:
        return answer(needed, False, f"no administrator token yet: [Acquire] signs in for {listed}")
    if grant.status is not GrantStatus.ACTIVE:
        return answer(needed, False, "the administrator's grant needs a new sign-in ([Acquire])")
    if app_only:
        return answer((), None, APP_ONLY_CONSENT[provider].format(needed=listed))
    # A provider answer that names no scopes granted all that was asked (as at sign-in).
    missing = missing_scopes(needed, grant.scopes) if grant.scopes else ()
    if missing:
        return answer(
            missing,
            False,
            f"the administrator's grant lacks {', '.join(missing)} ({transport.value} needs them): "
            "sign in again ([Acquire]) to consent to them",
        )
    return answer((), True, f"the administrator's grant has what {transport.value} needs ({listed})")
