"""The notifier's use cases: an event in, alerts raised or resolved, their notices and
events out. The decisions and words come from `domain`; this module loads, calls, stores
and publishes, in that order, through the ports."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from fleetmail_contracts.alerts import (
    AcknowledgeAlert,
    AlertCause,
    AlertCounts,
    AlertList,
    AlertView,
    CountAlerts,
    ListAlerts,
)
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.tenants import UnknownTenant

from .domain import (
    PROVIDER_ANSWERS_AGAIN,
    RAISED_NOTICE,
    RESOLVED_NOTICE,
    Action,
    Condition,
    ConditionEnded,
    Event,
    FailureRate,
    Raise,
    Resolve,
    administrator_sign_in,
    alert_raised,
    alert_resolved,
    condition_change,
    lasting_alert,
    on_mail_event,
    on_token_event,
    raised_notice,
    resolved_notice,
    scan_grants,
    started_before,
)
from .domain.notices import (
    MAILTO,
    NO_ADMINISTRATOR_ADDRESS,
    NO_RELAY,
    OUTSIDE_DOMAINS,
    SIGN_IN_NOTICE,
    delivery,
    endpoints,
    sign_in_request,
)
from .ports import AlertPublisher, AlertStore, Clock, Outbox, TenantReader, TokenService
from .telemetry import count_transition

log = logging.getLogger("notifier")


@dataclass(frozen=True)
class AlertRules:
    """The settings the use cases decide by."""

    provider_unreachable_after: timedelta
    expiring_horizon: timedelta
    mail_relay: bool
    """Whether alert e-mail has a way out (the operator's relay)."""


class AlertService:
    def __init__(
        self,
        store: AlertStore,
        outbox: Outbox,
        publisher: AlertPublisher,
        tenants: TenantReader,
        tokens: TokenService,
        failure_rate: FailureRate,
        rules: AlertRules,
        *,
        clock: Clock,
    ) -> None:
        self.store = store
        self._outbox = outbox
        self._publisher = publisher
        self._tenants = tenants
        self._tokens = tokens
        self._failure_rate = failure_rate
        self._rules = rules
        self._clock = clock

    async def on_token_event(self, event: Event) -> None:
        change = condition_change(event, self._clock())
        if isinstance(change, Condition):
            await self.store.start_condition(change)
        elif isinstance(change, ConditionEnded):
            await self.store.end_condition(change.key)
        await self.apply(on_token_event(event))

    async def on_mail_event(self, event: Event) -> None:
        await self.apply(on_mail_event(event) + self._failure_rate.observe(event))

    async def apply(self, actions: list[Action]) -> list[str]:
        """Carries out the actions; returns the keys of the alerts this raised."""
        now = self._clock()
        raised_keys: list[str] = []
        for action in actions:
            if isinstance(action, Raise):
                raised = await self.store.raise_(action, now)
                if raised is not None:
                    raised_keys.append(action.key)
                    await self._raised(raised, action, now)
            else:
                resolved = await self.store.resolve(action, now)
                if resolved is not None:
                    await self._resolved(resolved, action, now)
        return raised_keys

    async def _raised(self, alert: AlertView, action: Raise, now: datetime) -> None:
        count_transition(alert, "raised")
        log.warning("alert raised for tenant %s: %s", alert.tenant_id, alert.title)
        if alert.for_administrators:
            await self._notify(alert, RAISED_NOTICE, raised_notice(alert), now)
        elif alert.cause is AlertCause.USER_REAUTHORIZATION_REQUIRED and alert.principal_address:
            await self._ask_to_sign_in(alert, alert.principal_address, now)
        await self._publisher.publish(alert_raised(alert, action.key, now))

    async def _resolved(self, alert: AlertView, action: Resolve, now: datetime) -> None:
        count_transition(alert, "resolved")
        log.info("alert resolved for tenant %s: %s (%s)", alert.tenant_id, alert.title, action.detail)
        if alert.for_administrators:
            await self._notify(alert, RESOLVED_NOTICE, resolved_notice(alert, action.detail), now)
        await self._publisher.publish(alert_resolved(alert, action.key, action.detail, now))

    async def _notify(self, alert: AlertView, event: str, payload: dict[str, Any], now: datetime) -> None:
        try:
            tenant = await self._tenants.get(alert.tenant_id)
        except UnknownTenant:
            return
        urls, problems = endpoints(tenant.notifications, relay=self._rules.mail_relay)
        for url in urls:
            await self._outbox.put(delivery(alert.tenant_id, url, event, payload, now))
        for problem in problems:
            log.warning("alert %s of tenant %s: %s", alert.alert_id, alert.tenant_id, problem)
            await self.store.note_channel_problem(alert.alert_id, problem)

    async def _ask_to_sign_in(self, alert: AlertView, user: str, now: datetime) -> None:
        """The user whose sign-in is wanted hears it by e-mail too, when the tenant asks for it:
        once per alert (a new one only after the sign-in resolved the last)."""
        try:
            tenant = await self._tenants.get(alert.tenant_id)
        except UnknownTenant:
            return
        if not tenant.notifications.sign_in_email:
            return
        administrator = tenant.administrator_address
        if not self._rules.mail_relay or administrator is None:
            problem = NO_RELAY if not self._rules.mail_relay else NO_ADMINISTRATOR_ADDRESS
            log.warning("alert %s of tenant %s: %s", alert.alert_id, alert.tenant_id, problem)
            await self.store.note_channel_problem(alert.alert_id, problem)
            return
        if not tenant.accepts_sign_in(user):
            # Only the tenant's own people are mailed: an address a job named outside its
            # mail domains would turn the operator's relay into anyone's mailer.
            log.warning("alert %s of tenant %s: %s", alert.alert_id, alert.tenant_id, OUTSIDE_DOMAINS)
            await self.store.note_channel_problem(alert.alert_id, OUTSIDE_DOMAINS)
            return
        # A parked job names its device; a token event (no job yet) names none.
        waits = alert.device_id is not None
        payload = sign_in_request(alert.alert_id, user, administrator, alert.device_id, job_waits=waits)
        await self._outbox.put(delivery(alert.tenant_id, f"{MAILTO}{user}", SIGN_IN_NOTICE, payload, now))

    async def raise_lasting_conditions(self) -> None:
        """Providers unreachable for longer than the setting become alerts. Idempotent."""
        now = self._clock()
        lasting = await self.store.lasting_conditions(
            started_before(now, self._rules.provider_unreachable_after)
        )
        raised = await self.apply([lasting_alert(condition, now) for condition in lasting])
        # The provider may have answered while this round raised its alerts: a condition that
        # ended meanwhile (here or in another replica) must not leave its alert open.
        ended = [key for key in raised if not await self.store.condition_exists(key)]
        await self.apply([Resolve(key, PROVIDER_ANSWERS_AGAIN) for key in ended])

    async def scan(self) -> None:
        """Grants approaching death, and administrators who have not signed in, asked of
        token-service, in case an event was missed."""
        for tenant in self._tenants.known():
            if not tenant.oauth_enabled:
                continue
            asked_at = self._clock()
            reply = await self._tokens.grant_status(tenant.tenant_id)
            await self.apply(
                scan_grants(reply.grants, self._clock(), self._rules.expiring_horizon)
                + self._as_of(asked_at, administrator_sign_in(tenant, reply.grants))
            )

    async def on_tenant_changed(self, previous: TenantSettings | None, current: TenantSettings) -> None:
        """OAuth 2.0 turned on without an administrator token: the device's prompt at once,
        not at the next scan; turned off: what asked for a sign-in resolves."""
        if previous is not None and _sign_in_settings(previous) == _sign_in_settings(current):
            return
        if not current.oauth_enabled:
            await self.apply(administrator_sign_in(current, ()))
            return
        asked_at = self._clock()
        reply = await self._tokens.grant_status(current.tenant_id)
        await self.apply(self._as_of(asked_at, administrator_sign_in(current, reply.grants)))

    @staticmethod
    def _as_of(asked_at: datetime, actions: list[Action]) -> list[Action]:
        """Actions known from grants read at `asked_at`: an event after that (the token acquired
        or dead meanwhile) has the last word."""
        return [replace(action, observed_at=asked_at) for action in actions]

    async def list_alerts(self, request: ListAlerts) -> AlertList:
        alerts = await self.store.list_alerts(request.tenant_id, request.device_id, request.include_resolved)
        return AlertList(alerts=tuple(alerts))

    async def count_alerts(self, request: CountAlerts) -> AlertCounts:
        return await self.store.counts_for_administrators(request.tenant_ids)

    async def acknowledge(self, request: AcknowledgeAlert) -> AlertList:
        acknowledged = await self.store.acknowledge(request.tenant_id, request.alert_id, request.by)
        return AlertList(alerts=(acknowledged,) if acknowledged else ())


def _sign_in_settings(tenant: TenantSettings) -> tuple[bool, str | None, bool]:
    """What decides whether the tenant's administrator must sign in."""
    address = tenant.administrator_address.casefold() if tenant.administrator_address else None
    return tenant.oauth_enabled, address, tenant.identity.app_only
