"""What an event means for alerts: raise one, resolve one, or nothing. Pure: no I/O.

An alert is identified by its dedupe key — tenant + grant + cause — so a thousand failed
jobs from one dead grant are one alert, and the event that shows the cause is gone
(the grant re-acquired or refreshed, a message sent) resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetmail_contracts.alerts import AlertCause, AlertSeverity


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


def event_time(event: dict[str, Any]) -> datetime | None:
    """The event's `occurred_at`, as an aware datetime; None when absent or unreadable."""
    try:
        moment = datetime.fromisoformat(str(event["occurred_at"]))
    except (KeyError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _observed(actions: list[Action], event: dict[str, Any]) -> list[Action]:
    when = event_time(event)
    return [replace(action, observed_at=when) for action in actions] if when else actions


def administrator_key(tenant_id: str) -> str:
    return f"{tenant_id}|administrator|reauthorization"


def user_key(tenant_id: str, address: str) -> str:
    return f"{tenant_id}|user:{address.casefold()}|reauthorization"


def expiring_key(tenant_id: str, kind: str, address: str) -> str:
    return f"{tenant_id}|{kind}:{address.casefold()}|expiring"


def smtp_key(tenant_id: str, cause: AlertCause) -> str:
    return f"{tenant_id}|smtp|{cause.value}"


def acquire_remedy(tenant_id: str) -> str:
    return (
        f"Acquire the administrator's refresh token again: `fleetmail tokens acquire {tenant_id}` or "
        f"POST /v1/admin/tenants/{tenant_id}/tokens/administrator/acquire (the seed's [Acquire])."
    )


def on_token_event(event: dict[str, Any]) -> list[Action]:
    return _observed(_token_actions(event), event)


def _token_actions(event: dict[str, Any]) -> list[Action]:
    kind = event.get("kind")
    principal = event.get("principal") or {}
    tenant_id, address = principal.get("tenant_id", ""), principal.get("address", "")
    administrator = principal.get("kind") == "administrator"
    grant_key = administrator_key(tenant_id) if administrator else user_key(tenant_id, address)
    if kind == "reauthorization_required":
        if administrator:
            return [
                Raise(
                    grant_key,
                    tenant_id,
                    AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED,
                    AlertSeverity.CRITICAL,
                    f"The administrator's refresh token for {address} needs re-authorization",
                    f"The provider refused the grant ({event.get('error', 'invalid_grant')} "
                    f"{list(event.get('error_codes') or [])}): no administrator function can send until "
                    "it is acquired again.",
                    acquire_remedy(tenant_id),
                    address,
                )
            ]
        return [
            Raise(
                grant_key,
                tenant_id,
                AlertCause.USER_REAUTHORIZATION_REQUIRED,
                AlertSeverity.WARNING,
                f"{address} must sign in again",
                "The user's refresh token is no longer accepted; the user signs in at the device's OAuth screen.",
                "Sign in at the device's OAuth screen.",
                address,
                for_administrators=False,
            )
        ]
    if kind == "expiring":
        return [
            Raise(
                expiring_key(tenant_id, principal.get("kind", ""), address),
                tenant_id,
                AlertCause.GRANT_EXPIRING,
                AlertSeverity.WARNING,
                f"The refresh token for {address} expires on {str(event.get('predicted_death_at', ''))[:10]}",
                "The provider will end this grant and keep-alive cannot prevent it (a Google app in "
                "testing mode); acquire it again before then.",
                acquire_remedy(tenant_id) if administrator else "Sign in again at the device's OAuth screen.",
                address,
                for_administrators=administrator,
            )
        ]
    if kind in ("acquired", "refreshed", "recovered"):
        actions: list[Action] = [
            Resolve(grant_key, f"the refresh token for {address} works again ({kind})"),
            Resolve(
                unreachable_key(tenant_id, principal.get("kind", ""), address), "the provider answers again"
            ),
        ]
        if kind == "acquired":
            actions.append(
                Resolve(expiring_key(tenant_id, principal.get("kind", ""), address), "acquired again")
            )
        return actions
    if kind == "deleted" and not administrator:
        return [Resolve(grant_key, f"the token of {address} was deleted")]
    return []


MAIL_CAUSES = {
    "smtp_auth_disabled": (
        AlertCause.SMTP_AUTH_DISABLED,
        "SMTP AUTH is switched off for the sending mailbox",
    ),
    "basic_auth_refused": (
        AlertCause.BASIC_AUTH_REFUSED,
        "The SMTP server no longer accepts basic authentication",
    ),
}


# The mail events that can change an alert (on_mail_event, FailureRate.observe); the others
# ("accepted", "deferred") are acknowledged with their batch and leave no span.
MAIL_EVENTS_ACTED_ON = frozenset({"sent", "failed", "parked"})


def on_mail_event(event: dict[str, Any]) -> list[Action]:
    return _observed(_mail_actions(event), event)


def _mail_actions(event: dict[str, Any]) -> list[Action]:
    kind, tenant_id = event.get("kind"), event.get("tenant_id", "")
    if kind == "failed":
        reason = event.get("reason_code")
        if reason in MAIL_CAUSES:
            cause, title = MAIL_CAUSES[reason]
            return [
                Raise(
                    smtp_key(tenant_id, cause),
                    tenant_id,
                    cause,
                    AlertSeverity.CRITICAL,
                    title,
                    f"{event.get('detail', '')} ({event.get('smtp_reply') or 'no reply'})",
                    event.get("remedy"),
                )
            ]
        if reason == "reauthorization_required":
            # Jobs failing on a dead grant: the same alert as the token event's, once.
            return [
                Raise(
                    administrator_key(tenant_id),
                    tenant_id,
                    AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED,
                    AlertSeverity.CRITICAL,
                    "The administrator's refresh token needs re-authorization",
                    str(event.get("detail", "")),
                    acquire_remedy(tenant_id),
                )
            ]
        return []
    if kind == "parked":
        user = str(event.get("user", ""))
        return [
            Raise(
                user_key(tenant_id, user),
                tenant_id,
                AlertCause.USER_REAUTHORIZATION_REQUIRED,
                AlertSeverity.WARNING,
                f"{user} must sign in to send",
                "A job of this user waits for the user's OAuth sign-in and resumes by itself after it.",
                "Sign in at the device's OAuth screen.",
                user,
                device_id=event.get("device_id"),
                for_administrators=False,
            )
        ]
    if kind == "sent":
        return [
            Resolve(smtp_key(tenant_id, cause), "a message was sent again")
            for cause in (AlertCause.SMTP_AUTH_DISABLED, AlertCause.BASIC_AUTH_REFUSED)
        ]
    return []


def unreachable_key(tenant_id: str, kind: str, address: str) -> str:
    return f"{tenant_id}|{kind}:{address.casefold()}|provider_unreachable"


def failure_rate_key(tenant_id: str) -> str:
    return f"{tenant_id}|delivery|failure_rate"


EXPLAINED_FAILURES = frozenset(
    {"reauthorization_required", "smtp_auth_disabled", "basic_auth_refused", "authorization_timeout"}
)
"""Failures another alert already explains; the failure-rate alert counts the others."""


class FailureRate:
    """The share of failed deliveries among a tenant's recent ones, with hysteresis: raised at
    `threshold`, resolved below half of it. Kept in memory (a statistic, rebuilt from the
    next deliveries after a restart)."""

    def __init__(self, threshold: float, window: int, min_samples: int) -> None:
        self.threshold = threshold
        self.window = window
        self.min_samples = min_samples
        self._outcomes: dict[str, list[bool]] = {}

    def observe(self, event: dict[str, Any]) -> list[Action]:
        return _observed(self._observe(event), event)

    def _observe(self, event: dict[str, Any]) -> list[Action]:
        kind, tenant_id = event.get("kind"), str(event.get("tenant_id", ""))
        if kind == "failed" and event.get("reason_code") in EXPLAINED_FAILURES:
            return []
        if kind not in ("sent", "failed"):
            return []
        outcomes = self._outcomes.setdefault(tenant_id, [])
        outcomes.append(kind == "failed")
        del outcomes[: -self.window]
        if len(outcomes) < self.min_samples:
            return []
        rate = sum(outcomes) / len(outcomes)
        if rate >= self.threshold:
            return [
                Raise(
                    failure_rate_key(tenant_id),
                    tenant_id,
                    AlertCause.DELIVERY_FAILURE_RATE,
                    AlertSeverity.WARNING,
                    f"{rate:.0%} of the tenant's last {len(outcomes)} deliveries failed",
                    "Failures without another alert's cause: see the dead letters for the replies.",
                    f"`fleetmail dead-letters list {tenant_id}` shows each failure and its reason.",
                )
            ]
        if rate < self.threshold / 2:
            return [Resolve(failure_rate_key(tenant_id), f"the failure rate fell to {rate:.0%}")]
        return []


def scan_grants(
    tenant_id: str, grants: list[dict[str, Any]], now: datetime, horizon: timedelta
) -> list[Action]:
    """The periodic scan, in case an event was missed: every active grant whose predicted
    death falls within the horizon raises the same alert an `expiring` event would."""
    actions: list[Action] = []
    for grant in grants:
        death = grant.get("predicted_death_at")
        if grant.get("status") != "active" or not death:
            continue
        moment = datetime.fromisoformat(str(death))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if moment - now <= horizon:
            principal = grant["principal"]
            actions += on_token_event(
                {"kind": "expiring", "principal": principal, "predicted_death_at": moment.isoformat()}
            )
    return actions
