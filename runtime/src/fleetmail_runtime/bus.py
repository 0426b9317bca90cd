"""NATS JetStream through FastStream: the broker, the streams, buckets and stores.

Every service declares the streams it touches at start-up (idempotent), so the order in
which services start does not matter.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from faststream.nats import JStream, NatsBroker, StorageType
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from fleetmail_contracts import streams
from nats.js.api import RetentionPolicy, StreamConfig
from nats.js.errors import BadRequestError
from opentelemetry.sdk.trace import TracerProvider

from .settings import CommonSettings

log = logging.getLogger(__name__)


def jobs_stream(settings: CommonSettings) -> JStream:
    return JStream(
        streams.JOBS_STREAM,
        subjects=list(streams.JOBS_SUBJECTS),
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=settings.jobs_duplicate_window_s,
        declare=False,
    )


def events_stream(settings: CommonSettings) -> JStream:
    return JStream(
        streams.EVENTS_STREAM,
        subjects=list(streams.EVENTS_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=timedelta(days=settings.events_max_age_days).total_seconds(),
        duplicate_window=settings.jobs_duplicate_window_s,
        declare=False,
    )


def dlq_stream(settings: CommonSettings) -> JStream:
    return JStream(
        streams.DLQ_STREAM,
        subjects=list(streams.DLQ_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        declare=False,
    )


def make_broker(
    settings: CommonSettings, service: str, tracer_provider: TracerProvider | None = None
) -> NatsBroker:
    middlewares = []
    # No exporter, no spans: the middleware would cost CPU on every message for nothing.
    if tracer_provider is not None and settings.otel_exporter != "none":
        middlewares.append(NatsTelemetryMiddleware(tracer_provider=tracer_provider))
    return NatsBroker(
        settings.nats_url.split(","),
        name=f"fleetmail-{service}",
        middlewares=middlewares,
        logger=logging.getLogger(f"{service}.bus"),
        log_level=logging.DEBUG,
        connect_timeout=5,
        max_reconnect_attempts=-1,
        graceful_timeout=10.0,
    )


async def declare_streams(broker: NatsBroker, settings: CommonSettings) -> None:
    """Create or update fleetmail's streams, KV buckets and object store."""
    js = broker.connection.jetstream()
    for stream in (jobs_stream(settings), events_stream(settings), dlq_stream(settings)):
        # JStream keeps its subjects apart from its config until FastStream declares it.
        config: StreamConfig = dataclasses.replace(stream.config, subjects=list(stream.subjects))
        try:
            await js.add_stream(config=config)
        except BadRequestError:
            await js.update_stream(config=config)
    await broker.key_value(streams.TENANTS_BUCKET, history=5)
    await broker.key_value(streams.DELIVERY_LEDGER_BUCKET, ttl=timedelta(days=7).total_seconds())
    await broker.key_value(streams.PARKED_JOBS_BUCKET)
    await broker.object_storage(streams.ATTACHMENTS_BUCKET)
