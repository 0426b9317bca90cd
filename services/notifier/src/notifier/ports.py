"""What the notifier's use cases need from the world, as `Protocol`s. The real adapters live
in `adapters/`; the in-memory fakes the unit tests use satisfy the same protocols, and the
contract suites in the repository's `tests/contracts/` run on both."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

from fleetmail_contracts.alerts import AlertCounts, AlertRaised, AlertResolved, AlertView
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import GrantStatusReply

from .domain import Condition, Raise, Resolve
from .domain.notices import Delivery, Postponed

Clock = Callable[[], datetime]
"""The time now, aware (UTC). Injected everywhere so that tests choose it."""


@dataclass(frozen=True)
class LiveAlert:
    """What the gauges count of a live (open or acknowledged) alert."""

    tenant_id: str
    cause: str
    severity: str
    state: str


class AlertStore(Protocol):
    """Alerts, one per dedupe key: open → acknowledged → resolved, changed only by an event
    newer than the one that last changed it; and the conditions that may become alerts.

    Times are kept to the millisecond. Each replica keeps what is open in memory (so a flood
    of events that change nothing costs nothing) and reads it again at `load`."""

    async def load(self) -> None:
        """Read what is open (at start-up, and now and then for other replicas' changes)."""

    async def raise_(self, action: Raise, now: datetime) -> AlertView | None:
        """The alert if this raised it (new or reopened with a new id); None if it was open
        already, or if an event newer than this one resolved it."""

    async def resolve(self, action: Resolve, now: datetime) -> AlertView | None:
        """The alert if this resolved it; None if none was open (as far as this replica
        knows), or if an event newer than this one raised it."""

    async def note_channel_problem(self, alert_id: str, problem: str) -> None: ...

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> AlertView | None: ...

    async def list_alerts(
        self, tenant_id: str, device_id: str | None, include_resolved: bool
    ) -> list[AlertView]:
        """Newest first; with `device_id`, that device's feed (tenant-wide alerts and its own)."""

    async def live_summary(self) -> list[LiveAlert]: ...

    async def counts_for_administrators(self, tenant_ids: Sequence[str] | None) -> AlertCounts:
        """Per tenant (of these, None: all), its unresolved alerts for administrators by
        severity: the alerts its administrators' list shows."""
        ...

    async def start_condition(self, condition: Condition) -> None:
        """Starts a condition; one already running keeps its start."""

    async def end_condition(self, key: str) -> None: ...

    async def condition_exists(self, key: str) -> bool: ...

    async def lasting_conditions(self, started_before: datetime) -> list[Condition]: ...


class Outbox(Protocol):
    """Notices waiting to go out, kept until delivered or given up."""

    async def put(self, delivery: Delivery) -> bool:
        """False when a delivery with this id is there already (nothing changes)."""

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, at most `limit`."""

    async def delivered(self, delivery_id: str, now: datetime) -> None: ...

    async def postponed(self, delivery_id: str, postponed: Postponed) -> None: ...

    async def failing(self, tenant_id: str) -> list[Delivery]:
        """Deliveries retrying or given up: a failing channel is itself visible."""


class AlertPublisher(Protocol):
    async def publish(self, event: AlertRaised | AlertResolved) -> None:
        """Publish on the events stream, once per event id (a redelivery is a duplicate)."""


class TenantReader(Protocol):
    async def get(self, tenant_id: str) -> TenantSettings:
        """The tenant's settings; `fleetmail_runtime.tenants.UnknownTenant` if there is none."""

    def known(self) -> list[TenantSettings]: ...


class TokenService(Protocol):
    """The questions the notifier asks token-service."""

    async def grant_status(self, tenant_id: str) -> GrantStatusReply: ...

    async def webhook_secret(self, tenant_id: str) -> str | None:
        """The tenant's webhook signing key; None when none is stored."""


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Raises `WebhookFailed` unless the endpoint answered 2xx."""


class MailSender(Protocol):
    @property
    def sender(self) -> str:
        """The From address of alert e-mails."""

    async def send(self, message: EmailMessage) -> None:
        """Raises `MailRelayFailed` unless the relay took the message."""
