"""The `EventPublisher` port on JetStream: token events into the events stream, each
deduplicated by its id."""

from __future__ import annotations

import logging

from fleetmail_contracts import streams
from fleetmail_contracts.tokens import TokenEventBase, token_event_subject
from fleetmail_runtime.bus import Bus

log = logging.getLogger(__name__)


class BusEvents:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def publish(self, event: TokenEventBase) -> None:
        kind: str = event.kind  # type: ignore[attr-defined]
        await self._bus.publish(
            event, token_event_subject(kind), stream=streams.EVENTS_STREAM, msg_id=event.event_id
        )
        log.info("token event %s for %s/%s", kind, event.principal.tenant_id, event.principal.kind.value)
