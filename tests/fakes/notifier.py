"""In-memory fakes of the notifier's ports (`notifier.ports`).

`AlertTable` plays the database: several `InMemoryAlertStore`s over one table are replicas,
each with its own memory of what is open, as the MongoDB adapter's are. The alert store and
the outbox run the same contract suites as their MongoDB adapters (`tests/contracts/`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from fleetmail_contracts.alerts import AlertCounts, AlertRaised, AlertResolved, AlertState, AlertView
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import GrantStatusReply, GrantView
from fleetmail_runtime.tenants import UnknownTenant
from notifier.domain import Condition, Raise, Resolve, counts_by_tenant
from notifier.domain.notices import Delivery, Postponed
from notifier.errors import MailRelayFailed, NoticeRefused, WebhookFailed
from notifier.ports import LiveAlert

LIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self, now: datetime = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def _millis(moment: datetime) -> datetime:
    """Times as the database keeps them (milliseconds)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _view(document: Mapping[str, Any]) -> AlertView:
    return AlertView(**{k: v for k, v in document.items() if k in AlertView.model_fields})


@dataclass
class AlertTable:
    """The shared storage of the replicas: alert documents by key, conditions by key."""

    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    conditions: dict[str, Condition] = field(default_factory=dict)


class InMemoryAlertStore:
    def __init__(self, table: AlertTable | None = None) -> None:
        self.table = table if table is not None else AlertTable()
        self._open: set[str] = set()
        self._conditions_open: set[str] = set()

    async def load(self) -> None:
        self._open = {key for key, d in self.table.alerts.items() if d["state"] in LIVE}
        self._conditions_open = set(self.table.conditions)

    async def raise_(self, action: Raise, now: datetime) -> AlertView | None:
        if action.key in self._open:
            return None
        observed = _millis(action.observed_at or now)
        fields: dict[str, Any] = {
            "alert_id": uuid.uuid4().hex,
            "tenant_id": action.tenant_id,
            "cause": action.cause.value,
            "severity": action.severity.value,
            "state": AlertState.OPEN.value,
            "title": action.title,
            "detail": action.detail,
            "remedy": action.remedy,
            "principal_address": action.principal_address,
            "device_id": action.device_id,
            "for_administrators": action.for_administrators,
            "raised_at": now,
            "last_seen_at": now,
            "occurrences": 1,
            "resolved_at": None,
            "changed_at": observed,
        }
        self._open.add(action.key)
        current = self.table.alerts.get(action.key)
        if current is None:
            self.table.alerts[action.key] = fields
            return _view(fields)
        if current["state"] in LIVE:
            current["last_seen_at"] = now
            current["occurrences"] += 1
            return None
        if current.get("changed_at") is None or current["changed_at"] < observed:
            current.update(fields)
            return _view(current)
        self._open.discard(action.key)  # resolved by a newer event: this report is stale
        return None

    async def resolve(self, action: Resolve, now: datetime) -> AlertView | None:
        if action.key not in self._open:
            return None
        observed = _millis(action.observed_at or now)
        current = self.table.alerts.get(action.key)
        if current is not None and current["state"] in LIVE:
            if current.get("changed_at") is None or current["changed_at"] <= observed:
                current.update(
                    state=AlertState.RESOLVED.value,
                    resolved_at=now,
                    resolution=action.detail,
                    changed_at=observed,
                )
                self._open.discard(action.key)
                return _view(current)
            return None  # raised by a newer event
        self._open.discard(action.key)  # resolved elsewhere meanwhile
        return None

    async def note_channel_problem(self, alert_id: str, problem: str) -> None:
        for document in self.table.alerts.values():
            if document["alert_id"] == alert_id:
                problems = document.setdefault("channel_problems", [])
                if problem not in problems:
                    problems.append(problem)

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> AlertView | None:
        for document in self.table.alerts.values():
            if (document["tenant_id"], document["alert_id"]) == (tenant_id, alert_id):
                if document["state"] != AlertState.OPEN.value:
                    return None
                document.update(state=AlertState.ACKNOWLEDGED.value, acknowledged_by=by)
                return _view(document)
        return None

    async def list_alerts(
        self, tenant_id: str, device_id: str | None, include_resolved: bool
    ) -> list[AlertView]:
        found = [
            d
            for d in self.table.alerts.values()
            if d["tenant_id"] == tenant_id
            and (include_resolved or d["state"] in LIVE)
            and (device_id is None or d["device_id"] in (None, device_id))
        ]
        found.sort(key=lambda d: d["raised_at"], reverse=True)
        return [_view(d) for d in found[:500]]

    async def counts_for_administrators(self, tenant_ids: Sequence[str] | None) -> AlertCounts:
        return counts_by_tenant(
            (d["tenant_id"], d["severity"], 1)
            for d in self.table.alerts.values()
            if d["state"] in LIVE
            and d.get("for_administrators", True)
            and (tenant_ids is None or d["tenant_id"] in tenant_ids)
        )

    async def live_summary(self) -> list[LiveAlert]:
        return [
            LiveAlert(d["tenant_id"], d["cause"], d["severity"], d["state"])
            for d in self.table.alerts.values()
            if d["state"] in LIVE
        ]

    async def start_condition(self, condition: Condition) -> None:
        if condition.key in self._conditions_open:
            return
        self._conditions_open.add(condition.key)
        self.table.conditions.setdefault(condition.key, replace(condition, since=_millis(condition.since)))

    async def end_condition(self, key: str) -> None:
        if key not in self._conditions_open:
            return
        self._conditions_open.discard(key)
        self.table.conditions.pop(key, None)

    async def condition_exists(self, key: str) -> bool:
        return key in self.table.conditions

    async def lasting_conditions(self, started_before: datetime) -> list[Condition]:
        return [c for c in self.table.conditions.values() if c.since <= started_before]

    def alert(self, key: str) -> dict[str, Any] | None:
        """The stored document of an alert (for assertions)."""
        return self.table.alerts.get(key)


class InMemoryOutbox:
    def __init__(self) -> None:
        self.deliveries: dict[str, Delivery] = {}

    async def put(self, delivery: Delivery) -> bool:
        if delivery.delivery_id in self.deliveries:
            return False
        self.deliveries[delivery.delivery_id] = delivery
        return True

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        due = [d for d in self.deliveries.values() if d.state == "pending" and d.next_attempt_at <= now]
        return due[:limit]

    async def delivered(self, delivery_id: str, now: datetime) -> None:
        self.deliveries[delivery_id] = replace(
            self.deliveries[delivery_id], state="delivered", last_error=None
        )

    async def postponed(self, delivery_id: str, postponed: Postponed) -> None:
        self.deliveries[delivery_id] = replace(
            self.deliveries[delivery_id],
            state=postponed.state,
            attempts=postponed.attempts,
            last_error=postponed.last_error,
            next_attempt_at=postponed.next_attempt_at,
        )

    async def failing(self, tenant_id: str) -> list[Delivery]:
        return [
            d
            for d in self.deliveries.values()
            if d.tenant_id == tenant_id and d.state in ("pending", "failed") and d.attempts > 0
        ]


class RecordingPublisher:
    """Keeps what was published; an event id published twice is kept once (as JetStream's
    duplicate window does)."""

    def __init__(self) -> None:
        self.events: list[AlertRaised | AlertResolved] = []

    async def publish(self, event: AlertRaised | AlertResolved) -> None:
        if all(seen.event_id != event.event_id for seen in self.events):
            self.events.append(event)

    def raised(self) -> list[AlertRaised]:
        return [e for e in self.events if isinstance(e, AlertRaised)]

    def resolved(self) -> list[AlertResolved]:
        return [e for e in self.events if isinstance(e, AlertResolved)]


class FakeTenants:
    def __init__(self, *tenants: TenantSettings) -> None:
        self.tenants = {t.tenant_id: t for t in tenants}

    async def get(self, tenant_id: str) -> TenantSettings:
        try:
            return self.tenants[tenant_id]
        except KeyError:
            raise UnknownTenant(f"no tenant {tenant_id!r}") from None

    def known(self) -> list[TenantSettings]:
        return list(self.tenants.values())


class FakeTokenService:
    def __init__(self) -> None:
        self.grants: dict[str, list[GrantView]] = {}
        self.secrets: dict[str, str] = {}
        self.secret_requests = 0

    async def grant_status(self, tenant_id: str) -> GrantStatusReply:
        return GrantStatusReply(grants=tuple(self.grants.get(tenant_id, ())))

    async def webhook_secret(self, tenant_id: str) -> str | None:
        self.secret_requests += 1
        return self.secrets.get(tenant_id)


class FakeWebhooks:
    """Endpoints that answer 2xx unless listed in `down`; those in `refused` are refused by the
    outbound rule, as the real sender refuses them, before anything is sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.down: set[str] = set()
        self.refused: set[str] = set()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        if url in self.refused:
            raise NoticeRefused(f"webhook: destination {url} is in a private range")
        if url in self.down:
            raise WebhookFailed("ConnectError")
        self.calls.append((url, body, dict(headers)))


class FakeMailRelay:
    def __init__(self, sender: str = "alerts@fleetmail.example") -> None:
        self._sender = sender
        self.messages: list[EmailMessage] = []
        self.down = False

    @property
    def sender(self) -> str:
        return self._sender

    async def send(self, message: EmailMessage) -> None:
        if self.down:
            raise MailRelayFailed("SMTPConnectError: the relay is down")
        self.messages.append(message)
