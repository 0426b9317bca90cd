"""notifier wiring: token and mail events in, alerts out (MongoDB, alert events, RPC)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.alerts import (
    ALERT_ACKNOWLEDGE_SUBJECT,
    ALERT_LIST_SUBJECT,
    AcknowledgeAlert,
    AlertCause,
    AlertList,
    AlertRaised,
    AlertResolved,
    AlertSeverity,
    ListAlerts,
    alert_event_subject,
)
from fleetmail_contracts.credentials import WEBHOOK_SECRET_SUBJECT, WebhookSecretReply, WebhookSecretRequest
from fleetmail_contracts.streams import MAIL_EVENT_PREFIX, TOKEN_EVENT_PREFIX
from fleetmail_contracts.tokens import GRANT_STATUS_SUBJECT, GrantStatusRequest
from fleetmail_runtime.bus import declare_streams, events_stream, make_broker
from fleetmail_runtime.mongo import connect_mongo
from fleetmail_runtime.periodic import periodic
from fleetmail_runtime.telemetry import configure_telemetry, gauges_polled
from fleetmail_runtime.tenants import TenantDirectory, UnknownTenant

from .alerts import AlertStore
from .channels import MailRelay, Outbox
from .domain import (
    MAIL_EVENTS_ACTED_ON,
    Action,
    FailureRate,
    Raise,
    Resolve,
    event_time,
    on_mail_event,
    on_token_event,
    scan_grants,
    unreachable_key,
)
from .settings import NotifierSettings
from .telemetry import OpenAlertGauge, count_transition, observing

SERVICE = "notifier"
TOKEN_EVENTS_DURABLE = streams.NOTIFIER_TOKENS_CONSUMER[1]
MAIL_EVENTS_DURABLE = streams.NOTIFIER_MAIL_CONSUMER[1]
log = logging.getLogger(SERVICE)


def build_app(settings: NotifierSettings) -> FastStream:
    telemetry = configure_telemetry(SERVICE, settings.common)
    broker = make_broker(settings.common, SERVICE, telemetry)
    stream = events_stream(settings.common)
    common: dict[str, Any] = {
        "stream": stream,
        "pull_sub": PullSub(batch_size=256, timeout=0.2, batch=True),
        "config": ConsumerConfig(max_deliver=10, ack_wait=30),
        "ack_policy": AckPolicy.NACK_ON_ERROR,
    }
    holder: dict[str, Any] = {}
    tenants = TenantDirectory(broker)
    secrets: dict[str, tuple[str | None, float]] = {}

    def store() -> AlertStore:
        return holder["store"]  # type: ignore[no-any-return]

    async def secret_of(tenant_id: str) -> str | None:
        """The tenant's webhook signing key, from token-service's sealed store (held 30 s)."""
        cached = secrets.get(tenant_id)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        response = await broker.request(
            WebhookSecretRequest(tenant_id=tenant_id), WEBHOOK_SECRET_SUBJECT, timeout=10
        )
        secret = WebhookSecretReply.model_validate_json(response.body).secret
        secrets[tenant_id] = (secret, time.monotonic() + 30)
        return secret

    async def notify(tenant_id: str, event: str, payload: dict[str, Any], now: datetime) -> None:
        try:
            tenant = await tenants.get(tenant_id)
        except UnknownTenant:
            return
        outbox: Outbox = holder["outbox"]
        for webhook in tenant.notifications.webhooks:
            await outbox.put(tenant_id, webhook.url, event, payload, now)
        recipients = tenant.notifications.email_recipients
        if recipients and outbox.relay is None:
            await store().note_channel_problem(
                payload["alert_id"],
                "e-mail: no working path — the notifier has no relay (FLEETMAIL_NOTIFIER_SMTP_HOST); "
                "the tenant's own grant is never used for alerts",
            )
        for recipient in recipients if outbox.relay is not None else ():
            await outbox.put(tenant_id, f"mailto:{recipient}", event, payload, now)

    async def gave_up(delivery: dict[str, Any], error: str) -> None:
        alert_id = json.loads(delivery["body"]).get("alert_id")
        if alert_id:
            await store().note_channel_problem(alert_id, f"{delivery['url']}: gave up ({error})")

    async def publish(event: AlertRaised | AlertResolved) -> None:
        await broker.publish(
            event,
            alert_event_subject(event.kind),
            headers={"Nats-Msg-Id": event.event_id},
            stream=streams.EVENTS_STREAM,
        )

    async def apply(actions: list[Action]) -> list[str]:
        """Carries out the actions; returns the keys of the alerts this raised."""
        now = datetime.now(UTC)
        raised_keys: list[str] = []
        for action in actions:
            if isinstance(action, Raise):
                raised = await store().raise_(action, now)
                if raised is not None:
                    raised_keys.append(action.key)
                    count_transition(raised, "raised")
                    log.warning("alert raised for tenant %s: %s", raised.tenant_id, raised.title)
                    if raised.for_administrators:
                        await notify(raised.tenant_id, "alert.raised", raised.model_dump(mode="json"), now)
                    await publish(
                        AlertRaised(
                            # One id per alert and transition: a redelivered event is a duplicate.
                            event_id=f"{raised.alert_id}-raised",
                            alert_id=raised.alert_id,
                            dedupe_key=action.key,
                            tenant_id=raised.tenant_id,
                            cause=raised.cause,
                            occurred_at=now,
                            severity=raised.severity,
                            title=raised.title,
                            detail=raised.detail,
                            remedy=raised.remedy,
                            device_id=raised.device_id,
                            principal_address=raised.principal_address,
                        )
                    )
            else:
                resolved = await store().resolve(action, now)
                if resolved is not None:
                    count_transition(resolved, "resolved")
                    log.info(
                        "alert resolved for tenant %s: %s (%s)",
                        resolved.tenant_id,
                        resolved.title,
                        action.detail,
                    )
                    if resolved.for_administrators:
                        notice = resolved.model_dump(mode="json") | {
                            "recovered": f"Recovered: {action.detail}"
                        }
                        await notify(resolved.tenant_id, "alert.resolved", notice, now)
                    await publish(
                        AlertResolved(
                            event_id=f"{resolved.alert_id}-resolved",
                            alert_id=resolved.alert_id,
                            dedupe_key=action.key,
                            tenant_id=resolved.tenant_id,
                            cause=AlertCause(resolved.cause),
                            occurred_at=now,
                            detail=f"Recovered: {action.detail}",
                        )
                    )
        return raised_keys

    failure_rate = FailureRate(
        settings.failure_rate_threshold, settings.failure_rate_window, settings.failure_rate_min_samples
    )

    async def track_unreachable(event: dict[str, Any]) -> None:
        """A refresh failing transiently starts a condition; the provider answering ends it."""
        principal = event.get("principal") or {}
        key = unreachable_key(
            principal.get("tenant_id", ""), principal.get("kind", ""), principal.get("address", "")
        )
        if event.get("kind") == "refresh_failed":
            await store().start_condition(
                key,
                event_time(event) or datetime.now(UTC),
                {"principal": principal, "provider": event.get("provider"), "error": event.get("error")},
            )
        elif event.get("kind") in ("recovered", "refreshed", "acquired", "deleted"):
            await store().end_condition(key)

    async def raise_lasting_conditions() -> None:
        """Providers unreachable for longer than the setting become alerts. Idempotent."""
        now = datetime.now(UTC)
        lasting = await store().lasting_conditions(
            now - timedelta(seconds=settings.provider_unreachable_after_s)
        )
        actions: list[Action] = []
        for condition in lasting:
            principal = condition.get("principal") or {}
            tenant_id = principal.get("tenant_id", "")
            seconds = (now - condition["since"].replace(tzinfo=UTC)).total_seconds()
            lasted = f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} s"
            actions.append(
                Raise(
                    condition["_id"],
                    tenant_id,
                    AlertCause.PROVIDER_UNREACHABLE,
                    AlertSeverity.WARNING,
                    f"{condition.get('provider', 'the identity provider')} has not answered for {lasted}",
                    f"Refreshing the token of {principal.get('address')} keeps failing: {condition.get('error')}. "
                    "Jobs wait and are retried; nothing is lost yet.",
                    "Check the tenant's outbound proxy setting and the provider's status page; no sign-in "
                    "is needed unless the provider refuses the token.",
                    principal.get("address"),
                )
            )
        raised = await apply(actions)
        # The provider may have answered while this round raised its alerts: a condition that
        # ended meanwhile (here or in another replica) must not leave its alert open.
        ended = [key for key in raised if not await store().condition_exists(key)]
        await apply([Resolve(key, "the identity provider answers again") for key in ended])

    async def scan() -> None:
        """Grants approaching death, asked of token-service, in case an event was missed."""
        horizon = timedelta(seconds=settings.expiring_horizon_s)
        for tenant in tenants.known():
            if not tenant.oauth_enabled:
                continue
            response = await broker.request(
                GrantStatusRequest(tenant_id=tenant.tenant_id), GRANT_STATUS_SUBJECT, timeout=10
            )
            grants = json.loads(response.body).get("grants", [])
            await apply(scan_grants(tenant.tenant_id, grants, datetime.now(UTC), horizon))

    def with_headers(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, str] | None]]:
        """Each event of a batch with its own headers (its trace context), when traced."""
        if not telemetry.tracing:
            return [(event, None) for event in events]
        message = broker.context.get_local("message")
        headers = list(getattr(message, "batch_headers", None) or [])
        return [(event, headers[i] if i < len(headers) else None) for i, event in enumerate(events)]

    @broker.subscriber(f"{TOKEN_EVENT_PREFIX}*", durable=TOKEN_EVENTS_DURABLE, **common)
    async def on_token_events(events: list[dict[str, Any]]) -> None:
        for event, headers in with_headers(events):
            with observing(event, headers):
                await track_unreachable(event)
                await apply(on_token_event(event))

    @broker.subscriber(f"{MAIL_EVENT_PREFIX}*", durable=MAIL_EVENTS_DURABLE, **common)
    async def on_mail_events(events: list[dict[str, Any]]) -> None:
        for event, headers in with_headers(events):
            if event.get("kind") not in MAIL_EVENTS_ACTED_ON:
                continue
            with observing(event, headers):
                await apply(on_mail_event(event) + failure_rate.observe(event))

    @broker.subscriber(ALERT_LIST_SUBJECT, queue=SERVICE)
    async def on_list(request: ListAlerts) -> AlertList:
        alerts = await store().list(request.tenant_id, request.device_id, request.include_resolved)
        return AlertList(alerts=tuple(alerts))

    @broker.subscriber(ALERT_ACKNOWLEDGE_SUBJECT, queue=SERVICE)
    async def on_acknowledge(request: AcknowledgeAlert) -> AlertList:
        acknowledged = await store().acknowledge(request.tenant_id, request.alert_id, request.by)
        return AlertList(alerts=(acknowledged,) if acknowledged else ())

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        mongo = connect_mongo(settings.common, SERVICE)
        holder["store"] = AlertStore(mongo, settings.database)
        await holder["store"].load()
        relay = None
        if settings.smtp_host:
            relay = MailRelay(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_security,
                settings.smtp_from,
                settings.smtp_username,
                settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                str(settings.smtp_ca_bundle) if settings.smtp_ca_bundle else None,
            )
        outbox = holder["outbox"] = Outbox(
            mongo,
            settings.database,
            secret_of,
            relay=relay,
            gave_up=gave_up,
            max_attempts=settings.webhook_max_attempts,
            breaker_failures=settings.webhook_breaker_failures,
            breaker_cooldown_s=settings.webhook_breaker_cooldown_s,
            per_minute=settings.webhook_per_minute,
        )
        await broker.connect()
        await declare_streams(broker, settings.common, uses=(streams.TENANTS_BUCKET,))
        await tenants.start()

        async def dispatch() -> None:
            await outbox.dispatch()

        try:
            async with (
                periodic(settings.reload_open_s, holder["store"].load, "reloading open alerts"),
                periodic(settings.webhook_dispatch_s, dispatch, "webhook dispatch"),
                periodic(settings.condition_check_s, raise_lasting_conditions, "checking lasting conditions"),
                periodic(settings.grant_scan_s, scan, "the scan for grants approaching death"),
                gauges_polled(
                    telemetry,
                    broker,
                    [streams.NOTIFIER_TOKENS_CONSUMER, streams.NOTIFIER_MAIL_CONSUMER],
                    OpenAlertGauge(holder["store"]).poll,
                ),
            ):
                yield
        finally:
            await outbox.close()
            await tenants.stop()
            await mongo.close()
            telemetry.shutdown()

    async def announce_ready() -> None:
        log.info("notifier ready")

    return FastStream(broker, lifespan=lifespan, after_startup=[announce_ready])
