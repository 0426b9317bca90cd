"""What an event can do to alerts — raise one or resolve one — and the keys alerts go by.

An alert is identified by its dedupe key — tenant + grant (or channel) + cause — so a
thousand failed jobs from one dead grant are one alert, and the event that shows the cause
is gone (the grant re-acquired or refreshed, a message sent) resolves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fleetmail_contracts.alerts import AlertCause, AlertSeverity

Event = Mapping[str, Any]
"""A token or mail event as read from the bus. Read as a mapping, not parsed into its
contract: a publisher a version ahead may add fields, and the notifier must still act."""


@dataclass(frozen=True)
class Raise:
    key: str
    tenant_id: str
    cause: AlertCause
    severity: AlertSeverity
    title: str
    detail: str
    remedy: str | None = None
    principal_address: str | None = None
    device_id: str | None = None
    """Set when the alert is for one device's feed only (a user at that device)."""
    for_administrators: bool = True
    observed_at: datetime | None = None
    """When the event behind it happened (None: now). Events reach the notifier on two
    consumers and late under load: a report older than the alert's last change is stale."""


@dataclass(frozen=True)
class Resolve:
    key: str
    detail: str
    observed_at: datetime | None = None


Action = Raise | Resolve


def event_time(event: Event) -> datetime | None:
    """The event's `occurred_at`, as an aware datetime; None when absent or unreadable."""
    try:
        moment = datetime.fromisoformat(str(event["occurred_at"]))
    except (KeyError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def observed(actions: list[Action], event: Event) -> list[Action]:
    """The actions, each carrying the time of the event behind it (when it has one)."""
    when = event_time(event)
    return [replace(action, observed_at=when) for action in actions] if when else actions


def administrator_key(tenant_id: str) -> str:
    return f"{tenant_id}|administrator|reauthorization"


def administrator_prompt_key(tenant_id: str) -> str:
    """The device's prompt to sign the administrator in (OAuth 2.0 on, no token yet): a key of
    its own, so a stale prompt never stands in for the dead grant's alert, which says more."""
    return f"{tenant_id}|administrator|sign-in"


def user_key(tenant_id: str, address: str) -> str:
    return f"{tenant_id}|user:{address.casefold()}|reauthorization"


def expiring_key(tenant_id: str, kind: str, address: str) -> str:
    return f"{tenant_id}|{kind}:{address.casefold()}|expiring"


def smtp_key(tenant_id: str, cause: AlertCause) -> str:
    return f"{tenant_id}|smtp|{cause.value}"


def quota_key(tenant_id: str, address: str) -> str:
    return f"{tenant_id}|mailbox:{address.casefold()}|sending_quota"


def unreachable_key(tenant_id: str, kind: str, address: str) -> str:
    return f"{tenant_id}|{kind}:{address.casefold()}|provider_unreachable"


def failure_rate_key(tenant_id: str) -> str:
    return f"{tenant_id}|delivery|failure_rate"


def configuration_key(tenant_id: str) -> str:
    return f"{tenant_id}|configuration"
