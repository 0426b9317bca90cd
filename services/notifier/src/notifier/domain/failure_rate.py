"""The delivery failure rate: an alert when too many of a tenant's recent deliveries fail
for reasons no other alert explains."""

from __future__ import annotations

from fleetmail_contracts.mail_events import FailureReason

from . import wording
from .actions import Action, Event, Resolve, failure_rate_key, observed

EXPLAINED_FAILURES = frozenset(
    reason.value
    for reason in (
        FailureReason.REAUTHORIZATION_REQUIRED,
        FailureReason.CONFIGURATION_ERROR,
        FailureReason.SMTP_AUTH_DISABLED,
        FailureReason.BASIC_AUTH_REFUSED,
        FailureReason.AUTHORIZATION_TIMEOUT,
        FailureReason.MAILBOX_FULL,
    )
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

    def observe(self, event: Event) -> list[Action]:
        return observed(self._observe(event), event)

    def _observe(self, event: Event) -> list[Action]:
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
            return [wording.failure_rate_too_high(tenant_id, rate, len(outcomes))]
        if rate < self.threshold / 2:
            return [Resolve(failure_rate_key(tenant_id), f"the failure rate fell to {rate:.0%}")]
        return []
