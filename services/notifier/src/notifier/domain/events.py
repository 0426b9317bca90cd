"""The alert events the notifier publishes, and the notices its channels carry, built from
an alert as the store returned it after a transition; and the alert counts it answers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fleetmail_contracts.alerts import (
    AlertCounts,
    AlertRaised,
    AlertResolved,
    AlertSeverity,
    AlertView,
    TenantAlertCounts,
)

RAISED_NOTICE = "alert.raised"
RESOLVED_NOTICE = "alert.resolved"


def recovered(detail: str) -> str:
    return f"Recovered: {detail}"


def alert_raised(alert: AlertView, key: str, now: datetime) -> AlertRaised:
    return AlertRaised(
        # One id per alert and transition: a redelivered event is a duplicate.
        event_id=f"{alert.alert_id}-raised",
        alert_id=alert.alert_id,
        dedupe_key=key,
        tenant_id=alert.tenant_id,
        cause=alert.cause,
        occurred_at=now,
        severity=alert.severity,
        title=alert.title,
        detail=alert.detail,
        remedy=alert.remedy,
        device_id=alert.device_id,
        principal_address=alert.principal_address,
    )


def alert_resolved(alert: AlertView, key: str, detail: str, now: datetime) -> AlertResolved:
    return AlertResolved(
        event_id=f"{alert.alert_id}-resolved",
        alert_id=alert.alert_id,
        dedupe_key=key,
        tenant_id=alert.tenant_id,
        cause=alert.cause,
        occurred_at=now,
        detail=recovered(detail),
    )


def raised_notice(alert: AlertView) -> dict[str, Any]:
    """The body of an `alert.raised` webhook call or e-mail: the alert as administrators see it."""
    return alert.model_dump(mode="json")


def resolved_notice(alert: AlertView, detail: str) -> dict[str, Any]:
    """The body of an `alert.resolved` notice: the alert, and what ended it."""
    return alert.model_dump(mode="json") | {"recovered": recovered(detail)}


def counts_by_tenant(rows: Iterable[tuple[str, str, int]]) -> AlertCounts:
    """(tenant, severity, count) rows as one count per tenant; an unknown severity is not counted."""
    counts: dict[str, dict[str, int]] = {}
    for tenant_id, severity, count in rows:
        if severity in AlertSeverity.__members__.values():
            per = counts.setdefault(tenant_id, {})
            per[severity] = per.get(severity, 0) + count
    return AlertCounts(
        tenants=tuple(TenantAlertCounts(tenant_id=t, **per) for t, per in sorted(counts.items()))
    )
