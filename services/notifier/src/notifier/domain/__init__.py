"""The notifier's decisions, pure (no I/O, no clock: time comes in as `now`).

- `actions`: `Raise` / `Resolve`, and the dedupe keys alerts go by;
- `rules`: what a token or mail event means for alerts, the grant scan, and whether a
  tenant's administrator has signed in;
- `wording`: every alert's title, detail and remedy;
- `conditions`: causes that become alerts only if they last (a provider not answering);
- `failure_rate`: the delivery failure rate, with hysteresis;
- `events`: the `AlertRaised` / `AlertResolved` events, the notices' bodies, the alert counts;
- `notices`: where notices go, their signature and e-mail form, retries and circuits.
"""

from __future__ import annotations

from .actions import (
    Action,
    Event,
    Raise,
    Resolve,
    administrator_key,
    administrator_prompt_key,
    configuration_key,
    event_time,
    expiring_key,
    failure_rate_key,
    smtp_key,
    unreachable_key,
    user_key,
)
from .conditions import (
    PROVIDER_ANSWERS_AGAIN,
    Condition,
    ConditionEnded,
    condition_change,
    lasting_alert,
    started_before,
)
from .events import (
    RAISED_NOTICE,
    RESOLVED_NOTICE,
    alert_raised,
    alert_resolved,
    counts_by_tenant,
    raised_notice,
    resolved_notice,
)
from .failure_rate import EXPLAINED_FAILURES, FailureRate
from .rules import MAIL_EVENTS_ACTED_ON, administrator_sign_in, on_mail_event, on_token_event, scan_grants
from .wording import acquire_remedy

__all__ = [
    "EXPLAINED_FAILURES",
    "MAIL_EVENTS_ACTED_ON",
    "PROVIDER_ANSWERS_AGAIN",
    "RAISED_NOTICE",
    "RESOLVED_NOTICE",
    "Action",
    "Condition",
    "ConditionEnded",
    "Event",
    "FailureRate",
    "Raise",
    "Resolve",
    "acquire_remedy",
    "administrator_key",
    "administrator_prompt_key",
    "administrator_sign_in",
    "alert_raised",
    "alert_resolved",
    "condition_change",
    "configuration_key",
    "counts_by_tenant",
    "event_time",
    "expiring_key",
    "failure_rate_key",
    "lasting_alert",
    "on_mail_event",
    "on_token_event",
    "raised_notice",
    "resolved_notice",
    "scan_grants",
    "smtp_key",
    "started_before",
    "unreachable_key",
    "user_key",
]
