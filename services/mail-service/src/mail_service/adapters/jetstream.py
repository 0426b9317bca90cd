"""Job commands as JetStream delivers them: the message adapter, and the jobs in flight."""

from __future__ import annotations

from collections.abc import Mapping

from faststream.nats import NatsMessage


class JetStreamJob:
    """A `JobMessage` over FastStream's `NatsMessage` (manual acknowledgement)."""

    def __init__(self, message: NatsMessage) -> None:
        self.message = message

    @property
    def subject(self) -> str:
        return self.message.raw_message.subject

    @property
    def body(self) -> bytes:
        return self.message.raw_message.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self.message.raw_message.headers or {}

    @property
    def attempt(self) -> int:
        metadata = self.message.raw_message.metadata
        return metadata.num_delivered if metadata and metadata.num_delivered else 1

    async def ack(self) -> None:
        await self.message.ack()

    async def nack(self, delay_s: float) -> None:
        await self.message.nack(delay=delay_s)


class InFlight:
    """The jobs this replica is delivering. Every third of `ack_wait`, JetStream hears that
    each is still alive (one timer for all, not one task per job), so only a dead replica's
    jobs are redelivered."""

    def __init__(self) -> None:
        self.messages: set[NatsMessage] = set()

    async def keep_alive(self) -> None:
        for msg in list(self.messages):
            if msg in self.messages:
                await msg.in_progress()
