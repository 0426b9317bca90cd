"""notifier wiring. For now it consumes token and mail events and logs them; alerts come next."""

from __future__ import annotations

import logging
from collections import Counter
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
        "pull_sub": PullSub(batch_size=256, timeout=0.2, batch=True),
        "config": ConsumerConfig(max_deliver=10, ack_wait=30),
        "ack_policy": AckPolicy.NACK_ON_ERROR,
    }

    @broker.subscriber(f"{TOKEN_EVENT_PREFIX}*", durable="notifier-tokens", **common)
    async def on_token_events(events: list[dict[str, Any]]) -> None:
        for event in events:
            principal = event.get("principal", {})
            log.info(
                "token event %s for tenant %s (%s)",
                event.get("kind"),
                principal.get("tenant_id"),
                principal.get("kind"),
            )

    @broker.subscriber(f"{MAIL_EVENT_PREFIX}*", durable="notifier-mail", **common)
    async def on_mail_events(events: list[dict[str, Any]]) -> None:
        kinds = Counter(str(event.get("kind")) for event in events)
        log.debug("mail events: %s", dict(kinds))

    async def declare() -> None:
        await broker.connect()
        await declare_streams(broker, settings.common)

    async def announce_ready() -> None:
        log.info("notifier ready")

    return FastStream(broker, on_startup=[declare], after_startup=[announce_ready])
