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
from fleetmail_contracts.jobs import JobFunction, resumed_job_subject
from fleetmail_contracts.mail_events import MAIL_EVENTS, MAIL_EVENTS_WILDCARD, MailAccepted
from fleetmail_contracts.tokens import PrincipalKind
from fleetmail_runtime.bus import BusUnavailable, make_broker
from fleetmail_runtime.lifecycle import ServiceRuntime
from fleetmail_runtime.settings import CommonSettings
from mail_service import requeue
from mail_service.adapters.events import REPLICA_HEADER, BusEventPublisher
from mail_service.adapters.ledger import KvDeliveryLedger
from mail_service.adapters.limits import KvMailboxLimits
from mail_service.adapters.parking import KvParkingLot, user_prefix
from mail_service.domain.limits import MailboxLimits, take
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError

from tests.contracts.mail import (
    PARK_TIMEOUT,
    DeliveryLedgerContract,
    EventPublisherContract,
    ParkingContract,
    common,
)
from tests.fakes.mail import FakeClock


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


class TestKvParkingLot(ParkingContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def parking(self, runtime: ServiceRuntime, clock: FakeClock) -> KvParkingLot:
        async def never_expires(job, function, user, administrator) -> None:
            raise AssertionError("no parked job expires in these tests")

        async def no_grant(principal) -> bool:
            return False

        lot = KvParkingLot(runtime.broker, PARK_TIMEOUT, never_expires, no_grant, clock)
        await lot.open()
        return lot


async def test_the_sweep_fails_an_expired_job_once_across_replicas_and_resumes_a_signed_in_users(
    runtime: ServiceRuntime,
) -> None:
    clock = FakeClock()
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    expired: list[str] = []
    signed_in: set[str] = set()

    async def on_expired(job, function, user, administrator) -> None:
        if job.tenant_id == tenant_id:  # other tests' parked jobs share the bucket
            expired.append(job.job_id)

    async def has_grant(principal) -> bool:
        return principal.address in signed_in

    # Two replicas' parking lots on the same bucket.
    lots = [KvParkingLot(runtime.broker, PARK_TIMEOUT, on_expired, has_grant, clock) for _ in range(2)]
    for lot in lots:
        await lot.open()
    late, waiting = (
        ParkingContract.job(tenant_id, "late@acme.example"),
        ParkingContract.job(tenant_id, "back@acme.example"),
    )
    for job in (late, waiting):
        await lots[0].park(job, JobFunction.SCAN_TO_EMAIL, job.login_user, job.model_dump_json().encode())
    clock.advance(PARK_TIMEOUT.total_seconds() - 1)
    signed_in.add("back@acme.example")  # a token event this replica missed
    for lot in lots:
        await lot.sweep()
    assert expired == []  # not yet
    assert await lots[1].resume_user(tenant_id, "back@acme.example") == 0, "the sweep resumed it"
    clock.advance(1)
    for lot in lots:
        await lot.sweep()
    # The late user's job failed once, not once per replica.
    assert expired == [late.job_id]
    assert await lots[1].resume_user(tenant_id, "late@acme.example") == 0


async def test_a_job_waiting_for_the_administrator_has_its_own_deadline_and_is_checked_as_the_administrators(
    runtime: ServiceRuntime,
) -> None:
    clock = FakeClock()
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    expired: list[tuple[str, str, bool]] = []
    asked: list[PrincipalKind] = []

    async def on_expired(job, function, user, administrator) -> None:
        if job.tenant_id == tenant_id:
            expired.append((job.job_id, user, administrator))

    async def has_grant(principal) -> bool:
        if principal.tenant_id == tenant_id:
            asked.append(principal.kind)
        return False

    lot = KvParkingLot(
        runtime.broker, PARK_TIMEOUT, on_expired, has_grant, clock, administrator_timeout=PARK_TIMEOUT * 4
    )
    await lot.open()
    job = ParkingContract.job(tenant_id, "admin@acme.example")
    deadline = await lot.park(
        job,
        JobFunction.SCAN_TO_EMAIL,
        "admin@acme.example",
        job.model_dump_json().encode(),
        administrator=True,
    )
    assert deadline == clock() + PARK_TIMEOUT * 4
    clock.advance(PARK_TIMEOUT.total_seconds())  # a login user's job would have failed by now
    await lot.sweep()
    assert expired == [] and asked == [PrincipalKind.ADMINISTRATOR]
    clock.advance(PARK_TIMEOUT.total_seconds() * 3)
    await lot.sweep()
    assert expired == [(job.job_id, "admin@acme.example", True)]


async def jobs_queued(nats_url: str, subject: str, job_id: str) -> list[str]:
    """The `Nats-Msg-Id` of each copy of the job queued on `subject` (read by sequence: the
    jobs stream is a work queue, where a second consumer is not allowed)."""
    client = await nats.connect(nats_url)
    js = client.jetstream()
    found, sequence = [], 1
    try:
        while True:
            try:
                msg = await js.get_msg(streams.JOBS_STREAM, sequence, subject=subject, next=True)
            except NotFoundError:
                return found
            if json.loads(msg.data or b"{}").get("job_id") == job_id:
                found.append((msg.headers or {}).get("Nats-Msg-Id", ""))
            sequence = int(msg.seq or sequence) + 1
    finally:
        await client.close()


async def test_a_parked_job_stays_parked_until_it_is_dead_lettered(runtime: ServiceRuntime) -> None:
    clock = FakeClock()
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    attempts: list[str] = []

    async def on_expired(job, function, user, administrator) -> None:
        if job.tenant_id != tenant_id:
            return
        attempts.append(job.job_id)
        if len(attempts) == 1:
            raise BusUnavailable("the dead letter was not taken", TimeoutError())

    async def no_grant(principal) -> bool:
        return False

    lot = KvParkingLot(runtime.broker, PARK_TIMEOUT, on_expired, no_grant, clock)
    await lot.open()
    job = ParkingContract.job(tenant_id, "late@acme.example")
    await lot.park(job, JobFunction.SCAN_TO_EMAIL, job.login_user, job.model_dump_json().encode())
    clock.advance(PARK_TIMEOUT.total_seconds())
    await lot.sweep()
    assert attempts == [job.job_id]
    assert job.model_dump_json() in await lot.parked_jobs(), "still parked: nothing holds it otherwise"
    await lot.sweep()
    assert attempts == [job.job_id, job.job_id]
    assert job.model_dump_json() not in await lot.parked_jobs()


async def test_a_resumption_cut_short_is_finished_by_the_next_one_and_queues_the_job_once(
    runtime: ServiceRuntime, nats_url: str
) -> None:
    async def never_expires(job, function, user, administrator) -> None:
        raise AssertionError("no parked job expires here")

    async def no_grant(principal) -> bool:
        return False

    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    lots = [
        KvParkingLot(runtime.broker, PARK_TIMEOUT, never_expires, no_grant, FakeClock()) for _ in range(2)
    ]
    for lot in lots:
        await lot.open()
    job = ParkingContract.job(tenant_id, "back@acme.example")
    await lots[0].park(job, JobFunction.SCAN_TO_EMAIL, job.login_user, job.model_dump_json().encode())
    # The first replica claims the entry and queues the job, then dies before removing the entry.
    [parked] = await lots[0]._entries(user_prefix(tenant_id, "back@acme.example"))
    claimed = await lots[0]._claim(parked)
    assert claimed is not None
    await runtime.broker.publish(
        parked.job_json.encode(),
        resumed_job_subject(parked.function),
        headers={"Nats-Msg-Id": claimed[0]},
        stream=streams.JOBS_STREAM,
    )
    assert job.model_dump_json() in await lots[1].parked_jobs(), "claimed, still parked"
    assert await lots[1].resume_user(tenant_id, "back@acme.example") == 1
    assert job.model_dump_json() not in await lots[1].parked_jobs()
    subject = resumed_job_subject(JobFunction.SCAN_TO_EMAIL)
    assert await jobs_queued(nats_url, subject, job.job_id) == [claimed[0]], "queued once"


async def test_a_refused_place_does_not_write_the_limits_bucket(runtime: ServiceRuntime) -> None:
    """A submission looking for a place again and again costs reads only, no revisions."""
    limits_store = KvMailboxLimits(runtime.broker)
    await limits_store.open()
    key = f"t-{uuid.uuid4().hex[:8]}.box"
    two = MailboxLimits(concurrent=2, interval_s=0.0)
    for holder in ("a", "b"):
        assert await limits_store.change(key, lambda s, h=holder: take(s, h, 100.0, two, 60))
    revision = (await limits_store.kv.get(key)).revision
    for _ in range(3):
        assert not await limits_store.change(key, lambda s: take(s, "c", 101.0, two, 60))
    assert (await limits_store.kv.get(key)).revision == revision
    assert await limits_store.change(key, lambda s: take(s, "c", 161.0, two, 60))  # leases ran out
    assert (await limits_store.kv.get(key)).revision == revision + 1


async def test_a_job_put_back_twice_under_one_id_is_queued_once_with_what_it_carries(
    runtime: ServiceRuntime, nats_url: str
) -> None:
    """A replica that dies between putting a job back and acknowledging the old message puts
    it back again when that message returns: the same id, so JetStream keeps one."""
    lot = KvParkingLot(runtime.broker, PARK_TIMEOUT, None, None, FakeClock())  # type: ignore[arg-type]
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    copy = requeue.copy_id(job_id, {"Nats-Msg-Id": job_id})
    carried = requeue.Carried(failures=2).headers()
    subject = resumed_job_subject(JobFunction.SCAN_TO_EMAIL)
    client = await nats.connect(nats_url)
    try:
        jsm = client.jsm()

        async def queued() -> int:
            info = await jsm.stream_info(streams.JOBS_STREAM, subjects_filter=subject)
            return (info.state.subjects or {}).get(subject, 0)

        before = await queued()
        for _ in range(2):
            await lot.put_back(f'{{"job_id": "{job_id}"}}'.encode(), JobFunction.SCAN_TO_EMAIL, copy, carried)
        assert await queued() == before + 1
        last = await jsm.get_last_msg(streams.JOBS_STREAM, subject)
    finally:
        await client.close()
    assert last.data == f'{{"job_id": "{job_id}"}}'.encode() and last.headers is not None
    assert last.headers[requeue.FAILURES] == "2" and last.headers["Nats-Msg-Id"] == copy
