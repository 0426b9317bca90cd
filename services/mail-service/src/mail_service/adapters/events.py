"""The event publisher: mail events and dead letters on their JetStream streams."""

from __future__ import annotations

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter, dead_letter_subject
from fleetmail_contracts.mail_events import mail_event_subject
from fleetmail_runtime.bus import bus_errors

from ..ports import MailEvent

REPLICA_HEADER = "Fleetmail-Replica"
"""Names the replica that published an event (its host and process): which one delivered a job."""


class BusEventPublisher:
    """Each event is published with `Nats-Msg-Id` = its `event_id`, so JetStream keeps one copy
    of an event published twice; a stream that does not take it raises `BusUnavailable`."""

    def __init__(self, broker: NatsBroker, service: str, replica: str) -> None:
        self.broker = broker
        self.service = service
        self.replica = replica

    async def publish(self, event: MailEvent) -> None:
        with bus_errors(f"{streams.EVENTS_STREAM} did not take a {event.kind} event"):
            await self.broker.publish(
                event,
                mail_event_subject(event.kind),
                headers={"Nats-Msg-Id": event.event_id, REPLICA_HEADER: self.replica},
                stream=streams.EVENTS_STREAM,
            )

    async def dead_letter(self, letter: DeadLetter) -> None:
        with bus_errors(f"{streams.DLQ_STREAM} did not take a dead letter"):
            await self.broker.publish(letter, dead_letter_subject(self.service), stream=streams.DLQ_STREAM)
