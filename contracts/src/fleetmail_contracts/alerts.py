"""Alert events, published by notifier: raised, acknowledged, resolved."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from ._base import Contract, Timestamp
from .streams import ALERT_EVENT_PREFIX, ALERT_RPC_PREFIX


class AlertCause(StrEnum):
    ADMINISTRATOR_REAUTHORIZATION_REQUIRED = "administrator_reauthorization_required"
    ADMINISTRATOR_NOT_SIGNED_IN = "administrator_not_signed_in"
    """OAuth 2.0 is on and no administrator token was ever acquired: its jobs wait for [Acquire]."""
    USER_REAUTHORIZATION_REQUIRED = "user_reauthorization_required"
    GRANT_EXPIRING = "grant_expiring"
    PROVIDER_UNREACHABLE = "provider_unreachable"
    SMTP_AUTH_DISABLED = "smtp_auth_disabled"
    BASIC_AUTH_REFUSED = "basic_auth_refused"
    DELIVERY_FAILURE_RATE = "delivery_failure_rate"
    CONFIGURATION_ERROR = "configuration_error"
    SENDING_QUOTA_EXCEEDED = "sending_quota_exceeded"
    MAILBOX_FULL = "mailbox_full"


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertEventBase(Contract):
    event_id: str
    alert_id: str
    dedupe_key: str
    tenant_id: str
    cause: AlertCause
    occurred_at: Timestamp


class AlertRaised(AlertEventBase):
    kind: Literal["raised"] = "raised"
    severity: AlertSeverity
    title: str
    detail: str
    remedy: str | None = None
    device_id: str | None = None
    principal_address: str | None = None


class AlertAcknowledged(AlertEventBase):
    kind: Literal["acknowledged"] = "acknowledged"
    by: str


class AlertResolved(AlertEventBase):
    kind: Literal["resolved"] = "resolved"
    detail: str


ALERT_EVENTS: dict[str, type[AlertEventBase]] = {
    "raised": AlertRaised,
    "acknowledged": AlertAcknowledged,
    "resolved": AlertResolved,
}


# --- request/reply (job-gateway asks notifier) ---------------------------------------

ALERT_LIST_SUBJECT = f"{ALERT_RPC_PREFIX}list"
ALERT_ACKNOWLEDGE_SUBJECT = f"{ALERT_RPC_PREFIX}acknowledge"
ALERT_COUNTS_SUBJECT = f"{ALERT_RPC_PREFIX}counts"


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertView(Contract):
    alert_id: str
    tenant_id: str
    cause: AlertCause
    severity: AlertSeverity
    state: AlertState
    title: str
    detail: str
    remedy: str | None = None
    principal_address: str | None = None
    device_id: str | None = None
    for_administrators: bool = True
    raised_at: Timestamp
    last_seen_at: Timestamp
    occurrences: int = 1
    resolved_at: Timestamp | None = None
    channel_problems: tuple[str, ...] = Field(
        default=(), description="Channels this alert could not reach (a failing channel is itself visible)"
    )


class ListAlerts(Contract):
    """A tenant's alerts; with `device_id`, that device's information feed (the tenant-wide
    warnings and those for users at that device)."""

    tenant_id: str
    device_id: str | None = None
    include_resolved: bool = False


class AlertList(Contract):
    alerts: tuple[AlertView, ...]


class AcknowledgeAlert(Contract):
    tenant_id: str
    alert_id: str
    by: str


class CountAlerts(Contract):
    """The fleet overview's question, for many tenants in one request: how many alerts for
    administrators are unresolved (open or acknowledged), by severity."""

    tenant_ids: tuple[str, ...] | None = Field(default=None, description="None: every tenant")


class TenantAlertCounts(Contract):
    tenant_id: str
    critical: int = Field(default=0, ge=0)
    warning: int = Field(default=0, ge=0)
    info: int = Field(default=0, ge=0)


class AlertCounts(Contract):
    tenants: tuple[TenantAlertCounts, ...] = Field(default=(), description="Only tenants with any")


def alert_event_subject(kind: str) -> str:
    return f"{ALERT_EVENT_PREFIX}{kind}"
