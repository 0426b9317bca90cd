"""The notifier's wiring: token and mail events in, alerts out (MongoDB, alert events,
notices to webhooks and e-mail, request/reply for job-gateway). `build_app` constructs
every object, typed, on one `ServiceRuntime`; nothing here decides or words an alert."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, NatsBroker, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.alerts import (
    ALERT_ACKNOWLEDGE_SUBJECT,
    ALERT_COUNTS_SUBJECT,
    ALERT_LIST_SUBJECT,
    AcknowledgeAlert,
    AlertCounts,
    AlertList,
    CountAlerts,
    ListAlerts,
)
from fleetmail_contracts.streams import MAIL_EVENT_PREFIX, TOKEN_EVENT_PREFIX
from fleetmail_runtime.bus import events_stream
from fleetmail_runtime.lifecycle import ServiceRuntime

from .adapters.bus import BusAlertPublisher, BusTokenService
from .adapters.channels import HttpWebhookSender, MailRelay, RelayMailSender
from .adapters.mongo_alerts import MongoAlertStore
from .adapters.mongo_outbox import MongoOutbox
from .dispatcher import Dispatcher, DispatchRules
from .domain import MAIL_EVENTS_ACTED_ON, FailureRate
from .ports import Clock
from .service import AlertRules, AlertService
from .settings import NotifierSettings
from .telemetry import OpenAlertGauge, observing

SERVICE = "notifier"
TOKEN_EVENTS_DURABLE = streams.NOTIFIER_TOKENS_CONSUMER[1]
MAIL_EVENTS_DURABLE = streams.NOTIFIER_MAIL_CONSUMER[1]
log = logging.getLogger(SERVICE)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Notifier:
    """The running notifier's parts: `app.run()` serves; the rest is there for tests."""

    app: FastStream
    runtime: ServiceRuntime
    alerts: AlertService
    dispatcher: Dispatcher


def mail_relay(settings: NotifierSettings) -> MailRelay | None:
    if not settings.smtp_host:
        return None
    return MailRelay(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_security,
        settings.smtp_from,
        settings.smtp_username,
        settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        str(settings.smtp_ca_bundle) if settings.smtp_ca_bundle else None,
    )


def build_app(settings: NotifierSettings, *, clock: Clock = utc_now) -> Notifier:
    runtime = ServiceRuntime(SERVICE, settings.common, uses=(streams.TENANTS_BUCKET,))
    store = MongoAlertStore(runtime.mongo, settings.database)
    outbox = MongoOutbox(runtime.mongo, settings.database)
    tokens = BusTokenService(runtime.bus, clock)
    relay = mail_relay(settings)
    alerts = AlertService(
        store,
        outbox,
        BusAlertPublisher(runtime.bus),
        runtime.tenants,
        tokens,
        FailureRate(
            settings.failure_rate_threshold, settings.failure_rate_window, settings.failure_rate_min_samples
        ),
        AlertRules(
            provider_unreachable_after=timedelta(seconds=settings.provider_unreachable_after_s),
            expiring_horizon=timedelta(seconds=settings.expiring_horizon_s),
            mail_relay=relay is not None,
        ),
        clock=clock,
    )
    webhooks = HttpWebhookSender(settings.common.outbound_policy())
    dispatcher = Dispatcher(
        outbox,
        store,
        tokens,
        webhooks,
        RelayMailSender(relay) if relay is not None else None,
        DispatchRules(
            max_attempts=settings.webhook_max_attempts,
            breaker_failures=settings.webhook_breaker_failures,
            breaker_cooldown_s=settings.webhook_breaker_cooldown_s,
            per_minute=settings.webhook_per_minute,
        ),
        clock=clock,
    )
    subscribe(runtime, settings, alerts)
    runtime.tenants.on_change(alerts.on_tenant_changed)
    runtime.on_start(store.load)
    runtime.on_stop(webhooks.close)
    runtime.every(settings.reload_open_s, store.load, "reloading open alerts")
    runtime.every(settings.webhook_dispatch_s, dispatcher.dispatch, "webhook dispatch")
    runtime.every(settings.condition_check_s, alerts.raise_lasting_conditions, "checking lasting conditions")
    runtime.every(settings.grant_scan_s, alerts.scan, "the scan for grants approaching death")
    runtime.gauges(
        [streams.NOTIFIER_TOKENS_CONSUMER, streams.NOTIFIER_MAIL_CONSUMER], OpenAlertGauge(store).poll
    )

    async def announce_ready() -> None:
        log.info("notifier ready")

    app = FastStream(runtime.broker, lifespan=runtime.lifespan, after_startup=[announce_ready])
    return Notifier(app, runtime, alerts, dispatcher)


def subscribe(runtime: ServiceRuntime, settings: NotifierSettings, alerts: AlertService) -> None:
    """The handler edge: event batches in (a failure leaves the whole batch unacknowledged,
    to come again: every action is idempotent), and job-gateway's two questions."""
    broker = runtime.broker
    events: dict[str, Any] = {
        "stream": events_stream(settings.common),
        "pull_sub": PullSub(batch_size=256, timeout=0.2, batch=True),
        "config": ConsumerConfig(max_deliver=10, ack_wait=30),
        "ack_policy": AckPolicy.NACK_ON_ERROR,
    }
    tracing = runtime.telemetry.tracing

    async def on_token_events(batch: list[dict[str, Any]]) -> None:
        for event, headers in with_headers(broker, batch, tracing):
            with observing(event, headers):
                await alerts.on_token_event(event)

    async def on_mail_events(batch: list[dict[str, Any]]) -> None:
        for event, headers in with_headers(broker, batch, tracing):
            if event.get("kind") not in MAIL_EVENTS_ACTED_ON:
                continue
            with observing(event, headers):
                await alerts.on_mail_event(event)

    async def on_list(request: ListAlerts) -> AlertList:
        return await alerts.list_alerts(request)

    async def on_acknowledge(request: AcknowledgeAlert) -> AlertList:
        return await alerts.acknowledge(request)

    async def on_count(request: CountAlerts) -> AlertCounts:
        """The fleet overview's one question for every tenant it shows."""
        return await alerts.count_alerts(request)

    broker.subscriber(f"{TOKEN_EVENT_PREFIX}*", durable=TOKEN_EVENTS_DURABLE, **events)(on_token_events)
    broker.subscriber(f"{MAIL_EVENT_PREFIX}*", durable=MAIL_EVENTS_DURABLE, **events)(on_mail_events)
    broker.subscriber(ALERT_LIST_SUBJECT, queue=SERVICE)(on_list)
    broker.subscriber(ALERT_ACKNOWLEDGE_SUBJECT, queue=SERVICE)(on_acknowledge)
    broker.subscriber(ALERT_COUNTS_SUBJECT, queue=SERVICE)(on_count)


def with_headers(
    broker: NatsBroker, events: list[dict[str, Any]], tracing: bool
) -> list[tuple[dict[str, Any], dict[str, str] | None]]:
    """Each event of a batch with its own headers (its trace context), when traced."""
    if not tracing:
        return [(event, None) for event in events]
    message = broker.context.get_local("message")
    headers = list(getattr(message, "batch_headers", None) or [])
    return [(event, headers[i] if i < len(headers) else None) for i, event in enumerate(events)]
