"""mail-service's attachment sweep on a real nats-server: what it removes and what it keeps,
uploads cut short, and the lease that lets one replica sweep at a time.

The sweep's clock runs ahead of the server's by more than the grace, so what was stored
just now is "old"; dead letters' failure times are set relative to that clock.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter, dead_letter_subject
from fleetmail_contracts.jobs import JobFunction
from fleetmail_runtime.lifecycle import ServiceRuntime
from fleetmail_runtime.settings import CommonSettings
from mail_service.adapters.attachments import ObjectStoreAttachments
from mail_service.adapters.lease import KvLease
from mail_service.adapters.parking import KvParkingLot
from mail_service.adapters.sweep import AttachmentSweep
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tests.contracts.mail import PARK_TIMEOUT, ParkingContract
from tests.fakes.mail import FakeClock

GRACE = timedelta(minutes=10)
RETENTION = timedelta(days=7)
STREAM = f"OBJ_{streams.ATTACHMENTS_BUCKET}"


class AheadClock:
    """The server's time plus `ahead`."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture(scope="module")
async def runtime(nats_url: str) -> AsyncIterator[ServiceRuntime]:
    service = ServiceRuntime("mail-service", CommonSettings(nats_url=nats_url), mongo=False)
    async with service.lifespan():
        yield service


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def make_sweep(runtime: ServiceRuntime, clock: AheadClock, owner: str = "replica-a") -> AttachmentSweep:
    async def never(*_: object) -> bool:
        return False

    attachments = ObjectStoreAttachments(runtime.broker)
    parking = KvParkingLot(runtime.broker, PARK_TIMEOUT, never, never, FakeClock())
    lease = KvLease(
        runtime.broker,
        streams.DELIVERY_LEDGER_BUCKET,
        "lease.attachment-sweep",
        owner,
        timedelta(seconds=60),
        clock,
    )
    for part in (attachments, parking, lease):
        await part.open()
    return AttachmentSweep(
        runtime.broker,
        attachments,
        parking,
        lease,
        clock,
        grace=GRACE,
        retention=RETENTION,
        max_bytes=0,
        alert_percent=80,
    )


async def put(js: JetStreamContext, name: str) -> str:
    """Store an object; its chunks' id."""
    store = await js.object_store(streams.ATTACHMENTS_BUCKET)
    info = await store.put(name, io.BytesIO(b"%PDF-1.4 " + uuid.uuid4().bytes * 100))
    return str(info.nuid)


async def has_meta(js: JetStreamContext, name: str) -> bool:
    subject = f"$O.{streams.ATTACHMENTS_BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    return await has_message(js, subject)


async def has_message(js: JetStreamContext, subject: str) -> bool:
    try:
        await js.get_last_msg(STREAM, subject)
    except NotFoundError:
        return False
    return True


def chunks_of(nuid: str) -> str:
    return f"$O.{streams.ATTACHMENTS_BUCKET}.C.{nuid}"


def job_naming(delivery_id: str, *names: str) -> bytes:
    return json.dumps({"job_id": delivery_id, "attachments": [{"object_name": n} for n in names]}).encode()


async def test_the_sweep_keeps_what_a_job_holds_and_removes_the_rest(
    runtime: ServiceRuntime, js: JetStreamContext
) -> None:
    clock = AheadClock(GRACE + timedelta(minutes=1))
    sweep = await make_sweep(runtime, clock)
    ids = {kind: uuid.uuid4().hex for kind in ("queued", "parked", "dead", "expired", "orphan")}
    names = {kind: f"{delivery}/{uuid.uuid4().hex}/0" for kind, delivery in ids.items()}
    nuids = {kind: await put(js, name) for kind, name in names.items()}
    # A queued job (the jobs stream has no consumer here: it stays queued).
    await runtime.broker.publish(
        job_naming(ids["queued"], names["queued"]), "fleetmail.jobs.v1.test", stream=streams.JOBS_STREAM
    )
    # A parked job: its key names its delivery id.
    job = ParkingContract.job(f"t-{uuid.uuid4().hex[:8]}", "walk-up@acme.example").model_copy(
        update={"job_id": ids["parked"]}
    )
    await sweep.parking.park(
        job, JobFunction.SCAN_TO_EMAIL, "walk-up@acme.example", job.model_dump_json().encode()
    )
    # Two dead letters: one within its retention, one past it.
    for kind, failed_at in (("dead", clock()), ("expired", clock() - RETENTION - timedelta(hours=1))):
        letter = DeadLetter(
            dead_letter_id=uuid.uuid4().hex,
            original_subject="fleetmail.jobs.v1.test",
            original_headers={},
            payload_b64=base64.b64encode(job_naming(ids[kind], names[kind])).decode(),
            reason_code="smtp_rejected",
            detail="refused",
            deliveries=1,
            failed_at=failed_at,
            service="mail-service",
        )
        await runtime.broker.publish(letter, dead_letter_subject("mail-service"), stream=streams.DLQ_STREAM)
    # An upload cut short: chunks, no meta message.
    stray = uuid.uuid4().hex
    await js.publish(chunks_of(stray), b"half a scan", stream=STREAM)

    await sweep.sweep()
    assert all([await has_meta(js, name) for name in names.values()]), "first sight: suspects only"
    assert await has_message(js, chunks_of(stray))
    await sweep.sweep()
    for kind in ("queued", "parked", "dead"):
        assert await has_meta(js, names[kind]), kind
        assert await has_message(js, chunks_of(nuids[kind])), kind
    for kind in ("expired", "orphan"):
        assert not await has_meta(js, names[kind]), kind
        assert not await has_message(js, chunks_of(nuids[kind])), kind
    assert not await has_message(js, chunks_of(stray)), "an upload cut short is purged"


async def test_fresh_chunks_without_a_meta_message_are_an_upload_in_progress(
    runtime: ServiceRuntime, js: JetStreamContext
) -> None:
    sweep = await make_sweep(runtime, AheadClock(timedelta(0)))
    uploading = uuid.uuid4().hex
    await js.publish(chunks_of(uploading), b"the first chunk", stream=STREAM)
    for _ in range(3):
        await sweep.sweep()
    assert await has_message(js, chunks_of(uploading))


async def test_one_replica_sweeps_at_a_time_and_another_takes_over_when_its_lease_runs_out(
    runtime: ServiceRuntime,
) -> None:
    clock = FakeClock()
    key = f"lease.test-{uuid.uuid4().hex[:8]}"
    leases = [
        KvLease(runtime.broker, streams.DELIVERY_LEDGER_BUCKET, key, owner, timedelta(seconds=60), clock)
        for owner in ("replica-a", "replica-b")
    ]
    for lease in leases:
        await lease.open()
    assert await leases[0].take()
    assert not await leases[1].take()
    clock.advance(59)
    assert await leases[0].take(), "renewed by its holder"
    clock.advance(59)
    assert not await leases[1].take(), "the renewal counts from when it was made"
    clock.advance(2)
    assert await leases[1].take(), "run out: another replica takes it"
    assert not await leases[0].take()
