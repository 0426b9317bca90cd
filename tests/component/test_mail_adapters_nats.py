"""mail-service's JetStream adapters on a real nats-server: the event publisher and the
delivery ledger pass the same contract suites as their fakes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_contracts.mail_events import MAIL_EVENTS, MAIL_EVENTS_WILDCARD, MailAccepted
from fleetmail_runtime.bus import BusUnavailable, make_broker
from fleetmail_runtime.lifecycle import ServiceRuntime
from fleetmail_runtime.settings import CommonSettings
from mail_service.adapters.events import REPLICA_HEADER, BusEventPublisher
from mail_service.adapters.ledger import KvDeliveryLedger
from nats.errors import TimeoutError as NatsTimeout

from tests.contracts.mail import DeliveryLedgerContract, EventPublisherContract, common


@pytest.fixture(scope="module")
async def runtime(nats_url: str) -> AsyncIterator[ServiceRuntime]:
    """The service skeleton on the module's nats-server: streams and buckets declared."""
    service = ServiceRuntime("mail-service", CommonSettings(nats_url=nats_url), mongo=False)
    async with service.lifespan():
        yield service


async def read_stream(nats_url: str, subject: str) -> list[nats.aio.msg.Msg]:
    """Every message on `subject` so far, oldest first (an ordered consumer, read to the end)."""
    client = await nats.connect(nats_url)
    try:
        subscription = await client.jetstream().subscribe(subject, ordered_consumer=True)
        found = []
        while True:
            try:
                found.append(await subscription.next_msg(timeout=0.5))
            except NatsTimeout:
                return found
    finally:
        await client.close()


class TestBusEventPublisher(EventPublisherContract):
    @pytest.fixture
    def publisher(self, runtime: ServiceRuntime) -> BusEventPublisher:
        return BusEventPublisher(runtime.broker, "mail-service", "test-host:4242")

    @pytest.fixture
    def read_events(self, nats_url: str):
        async def read(job_id: str):
            events = []
            for message in await read_stream(nats_url, MAIL_EVENTS_WILDCARD):
                event = json.loads(message.data)
                if event["job_id"] == job_id:
                    events.append(MAIL_EVENTS[event["kind"]].model_validate(event))
            return events

        return read

    @pytest.fixture
    def read_dead_letters(self, nats_url: str):
        async def read(dead_letter_id: str):
            letters = [
                DeadLetter.model_validate_json(m.data)
                for m in await read_stream(nats_url, f"{streams.DLQ_PREFIX}mail-service")
            ]
            return [d for d in letters if d.dead_letter_id == dead_letter_id]

        return read

    async def test_each_event_names_the_replica_that_published_it(
        self, publisher: BusEventPublisher, nats_url: str
    ) -> None:
        job_id = f"job-{uuid.uuid4().hex[:8]}"
        await publisher.publish(MailAccepted(**common(job_id), event_id=uuid.uuid4().hex))
        [message] = [
            m
            for m in await read_stream(nats_url, MAIL_EVENTS_WILDCARD)
            if json.loads(m.data)["job_id"] == job_id
        ]
        assert message.headers is not None and message.headers[REPLICA_HEADER] == "test-host:4242"


class TestKvDeliveryLedger(DeliveryLedgerContract):
    @pytest.fixture
    async def ledger(self, runtime: ServiceRuntime) -> KvDeliveryLedger:
        ledger = KvDeliveryLedger(runtime.broker, write_timeout_s=5)
        await ledger.open()
        return ledger

    async def test_a_write_the_bus_never_takes_fails_after_the_write_timeout(self, nats_url: str) -> None:
        broker = make_broker(CommonSettings(nats_url=nats_url), "ledger-outage-test")
        await broker.connect()
        waits: list[float] = []
        elapsed = iter(range(0, 1000))  # each reading of the clock one second later

        async def no_sleep(seconds: float) -> None:
            waits.append(seconds)

        ledger = KvDeliveryLedger(
            broker, write_timeout_s=3, sleep=no_sleep, monotonic=lambda: float(next(elapsed))
        )
        await ledger.open()
        await broker.stop()  # the connection is gone: every write fails
        with pytest.raises(BusUnavailable, match="cannot be written"):
            await ledger.record(f"job-{uuid.uuid4().hex}", "<x@fleetmail>")
        assert waits and all(w == 0.2 for w in waits) and len(waits) <= 4
