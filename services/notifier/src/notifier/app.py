"""notifier wiring. For now it consumes token and mail events and logs them; alerts come next."""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, PullSub
from fleetmail_contracts.streams import MAIL_EVENT_PREFIX, TOKEN_EVENT_PREFIX
from fleetmail_runtime.bus import declare_streams, events_stream, make_broker
from fleetmail_runtime.telemetry import configure_tracing

from .settings import NotifierSettings

SERVICE = "notifier"
log = logging.getLogger(SERVICE)


def build_app(settings: NotifierSettings) -> FastStream:
    broker = make_broker(settings.common, SERVICE, configure_tracing(SERVICE, settings.common))
    stream = events_stream(settings.common)
    common: dict[str, Any] = {
        "stream": stream,
        "pull_sub": PullSub(batch_size=64, timeout=1.0),
        "config": ConsumerConfig(max_deliver=10, ack_wait=30),
        "ack_policy": AckPolicy.NACK_ON_ERROR,
    }

    @broker.subscriber(f"{TOKEN_EVENT_PREFIX}*", durable="notifier-tokens", **common)
    async def on_token_event(event: dict[str, Any]) -> None:
        principal = event.get("principal", {})
        log.info(
            "token event %s for tenant %s (%s)",
            event.get("kind"),
            principal.get("tenant_id"),
            principal.get("kind"),
        )

    @broker.subscriber(f"{MAIL_EVENT_PREFIX}*", durable="notifier-mail", **common)
    async def on_mail_event(event: dict[str, Any]) -> None:
        log.info(
            "mail event %s for job %s (tenant %s)",
            event.get("kind"),
            event.get("job_id"),
            event.get("tenant_id"),
        )

    async def declare() -> None:
        await broker.connect()
        await declare_streams(broker, settings.common)

    async def announce_ready() -> None:
        log.info("notifier ready")

    return FastStream(broker, on_startup=[declare], after_startup=[announce_ready])
