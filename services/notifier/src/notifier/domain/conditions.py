"""Causes that become alerts only if they last: a provider that keeps failing to answer a
refresh. A short outage is normal (jobs wait and retry); one longer than the setting is
worth an administrator's look.

A `refresh_failed` token event starts a condition (token-service sends it once, when a
streak of transient failures begins); the provider answering again (the grant refreshed,
recovered or acquired) or the grant deleted ends it. A periodic check raises an alert for
every condition older than the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import wording
from .actions import Event, Raise, event_time, unreachable_key
from .rules import CONFIGURATION_ERROR


@dataclass(frozen=True)
class Condition:
    key: str
    since: datetime
    tenant_id: str
    principal_kind: str
    address: str | None
    provider: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ConditionEnded:
    key: str


ENDS_A_CONDITION = frozenset({"recovered", "refreshed", "acquired", "deleted"})


def condition_change(event: Event, now: datetime) -> Condition | ConditionEnded | None:
    """What a token event does to its grant's provider-unreachable condition."""
    principal = event.get("principal") or {}
    tenant_id, kind = str(principal.get("tenant_id", "")), str(principal.get("kind", ""))
    address = principal.get("address")
    key = unreachable_key(tenant_id, kind, str(address or ""))
    if event.get("kind") == "refresh_failed":
        if event.get("error") == CONFIGURATION_ERROR:
            return None  # not an outage: the configuration alert says what to fix
        return Condition(
            key,
            event_time(event) or now,
            tenant_id,
            kind,
            address,
            event.get("provider"),
            event.get("error"),
        )
    if event.get("kind") in ENDS_A_CONDITION:
        return ConditionEnded(key)
    return None


def started_before(now: datetime, after: timedelta) -> datetime:
    """Conditions that started at or before this moment have lasted long enough."""
    return now - after


def lasting_alert(condition: Condition, now: datetime) -> Raise:
    """The alert for a condition that lasted (the time it has lasted is in its title)."""
    since = condition.since if condition.since.tzinfo else condition.since.replace(tzinfo=UTC)
    return wording.provider_not_answering(
        condition.key,
        condition.tenant_id,
        condition.provider,
        condition.address,
        condition.error,
        (now - since).total_seconds(),
    )


PROVIDER_ANSWERS_AGAIN = "the identity provider answers again"
