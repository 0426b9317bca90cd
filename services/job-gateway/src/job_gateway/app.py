"""job-gateway: the HTTP API and the SMTP listener for devices and administrators, and the
job status projection.

Wiring only: `build_app` constructs every object on a `ServiceRuntime` (no I/O happens
before the lifespan starts), registers what starts and stops with it, and joins the API.
Decisions about delivery and tokens are made by mail-service and token-service.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, PullSub
from fleetmail_contracts import streams
from fleetmail_contracts.mail_events import MAIL_EVENTS_WILDCARD
from fleetmail_runtime.bus import events_stream
from fleetmail_runtime.lifecycle import ServiceRuntime
from opentelemetry.trace import NoOpTracerProvider

from .adapters.dead_letters import JetStreamDeadLetters
from .adapters.jetstream import JetStreamConsumerLag, ObjectStoreAttachments
from .adapters.mongo import MongoStore
from .allowlists import AllowlistPolicy
from .api import openapi, problems
from .api.main import api_router
from .console import ConsoleSessions, build_console
from .credentials import load_keys
from .device_panel import DevicePanel
from .settings import GatewaySettings
from .smtp_listener import SmtpListener
from .telemetry import HttpTelemetry
from .use_cases import (
    Administrators,
    AlertRelay,
    DeadLetterDesk,
    DeviceDirectory,
    DeviceEvents,
    FleetOverview,
    JobIntake,
    JobQueries,
    Queues,
    Services,
    TenantAdministration,
    TokenRelay,
    TsiRouting,
)

SERVICE = "job-gateway"
STATUS_DURABLE = streams.GATEWAY_STATUS_CONSUMER[1]
log = logging.getLogger(SERVICE)


def build_app(settings: GatewaySettings) -> FastAPI:
    runtime = ServiceRuntime(
        SERVICE,
        settings.common,
        uses=(streams.TENANTS_BUCKET, streams.ATTACHMENTS_BUCKET),
        bus_timeout_s=settings.token_rpc_timeout_s,
    )
    broker = runtime.broker
    keys = load_keys(settings)
    store = MongoStore(runtime.mongo, settings.database)
    tenants = TenantAdministration(
        store, runtime.tenants, settings.common.identity_allowed_origins, settings.common.outbound_policy()
    )
    devices = DeviceDirectory(
        store,
        keys.device_secret,
        policy=AllowlistPolicy(settings.min_allowlist_prefix_v4, settings.min_allowlist_prefix_v6),
        max_session_users=settings.device_session_users_max,
    )
    attachments = ObjectStoreAttachments(broker)
    tsi_routing = TsiRouting(store, settings.max_recipients)
    intake = JobIntake(
        settings,
        store,
        attachments,
        runtime.bus,
        provider_of=tenants.provider_of,
        tsi_routing=tsi_routing,
        sessions=devices,
        tenant_of=tenants.current,
    )
    jobs = JobQueries(store)
    tokens = TokenRelay(runtime.bus, settings)
    alerts = AlertRelay(runtime.bus, settings)
    listener = SmtpListener(settings, intake, devices, tenants.current, tokens.has_user_grant)
    services = Services(
        intake=intake,
        devices=devices,
        tenants=tenants,
        administrators=Administrators(store, keys),
        tokens=tokens,
        alerts=alerts,
        device_events=DeviceEvents(runtime.bus, settings, devices),
        jobs=jobs,
        dead_letters=DeadLetterDesk(
            JetStreamDeadLetters(broker),
            store,
            attachments,
            timedelta(days=settings.common.dead_letter_retention_days),
        ),
        queues=Queues(JetStreamConsumerLag(broker)),
        overview=FleetOverview(
            store,
            tokens,
            alerts,
            timedelta(days=settings.overview_expiring_days),
            settings.overview_page_size,
            max_age=timedelta(seconds=settings.overview_max_age_s),
        ),
        tsi_routing=tsi_routing,
        bus_connected=lambda: broker.connection is not None and broker.connection.is_connected,
        smtp_min_tls=listener.min_tls,
        device_panel=DevicePanel.of(settings),
    )

    subscriber = broker.subscriber(
        MAIL_EVENTS_WILDCARD,
        stream=events_stream(settings.common),
        durable=STATUS_DURABLE,
        # A batch of events becomes one bulk write: the projection keeps up with delivery
        # without taking the embedded database's write rate away from everything else.
        pull_sub=PullSub(batch_size=256, timeout=0.2, batch=True),
        config=ConsumerConfig(max_deliver=10, ack_wait=30),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )

    async def on_mail_events(events: list[dict[str, Any]]) -> None:
        await jobs.project(events)

    subscriber(on_mail_events)

    console_sessions = ConsoleSessions(
        runtime.mongo, settings.database, timedelta(seconds=settings.console_session_ttl_s)
    )

    runtime.on_start(store.ensure_indexes)
    runtime.on_start(console_sessions.ensure_indexes)
    runtime.on_start(devices.reload)
    runtime.every(settings.allowlist_refresh_s, devices.reload, "allowlist index refresh")
    runtime.on_start(tenants.publish_all)
    runtime.on_start(broker.start)
    runtime.on_start(listener.start)
    runtime.on_stop(broker.stop)
    runtime.on_stop(listener.close)
    runtime.gauges([streams.GATEWAY_STATUS_CONSUMER])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            log.info("job-gateway ready on http://%s:%d", settings.host, settings.port)
            yield

    app = FastAPI(
        title="fleetmail job-gateway",
        version="0.1.0",
        description="OAuth 2.0 e-mail for device fleets: jobs from devices, settings and tokens for administrators.",
        lifespan=lifespan,
        # FastAPI's own telemetry stays off: it records query strings (the OAuth callback's
        # carries an authorization code) and costs more than HttpTelemetry, added below.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.include_router(api_router)
    app.mount("/console", build_console(services, console_sessions))

    @app.get("/", include_in_schema=False)
    async def to_console() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    problems.install(app)
    openapi.install(app)
    telemetry = runtime.telemetry
    if telemetry.tracing or telemetry.metering:
        # One span per request (the root of a job's trace) and the HTTP server metric;
        # probes stay out of both.
        app.add_middleware(
            HttpTelemetry,
            tracer=(telemetry.tracer_provider or NoOpTracerProvider()).get_tracer(
                "fleetmail.job-gateway.http"
            ),
            meter=telemetry.meter,
            excluded_paths=("/readyz", "/healthz"),
        )
    return app
