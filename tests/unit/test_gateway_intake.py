"""Job intake with in-memory ports: what is kept and published, and that nothing is left
behind when a submission is refused or the bus is down."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from fleetmail_contracts import streams
from fleetmail_contracts.jobs import AttachmentRef, JobFunction
from fleetmail_contracts.tenants import TenantSettings
from job_gateway.domain import Device, scoped_job_id
from job_gateway.errors import (
    AttachmentTypeRefused,
    EventBusUnavailable,
    InvalidJob,
    OutsideTenantDomains,
    RateLimited,
    SubmissionTooLarge,
    TooManyAttachments,
    TooManyBytesInFlight,
)
from job_gateway.ratelimit import RateLimiter
from job_gateway.schemas import JobSubmission
from job_gateway.settings import GatewaySettings
from job_gateway.use_cases import JobIntake
from job_gateway.use_cases.intake import read_submission
from starlette.datastructures import Headers, UploadFile

from tests.fakes.gateway import InMemoryAttachments, InMemoryGatewayStore, RecordingPublisher

DEVICE = Device("mfp-1", "t1", machine_address="admin@t1.example")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def upload(
    name: str = "scan.pdf", content_type: str = "application/pdf", data: bytes = b"%PDF-1.4"
) -> UploadFile:
    return UploadFile(io.BytesIO(data), filename=name, headers=Headers({"content-type": content_type}))


class Parts:
    def __init__(self, burst: int = 100, **settings: Any) -> None:
        self.store = InMemoryGatewayStore()
        self.attachments = InMemoryAttachments()
        self.publisher = RecordingPublisher()
        self.now = [0.0]
        limiter = RateLimiter(rate_per_s=1, burst=burst, clock=lambda: self.now[0])
        self.intake = JobIntake(
            GatewaySettings(**settings),
            self.store,
            self.attachments,
            self.publisher,
            limiter=limiter,
            clock=lambda: NOW,
        )


async def test_a_job_is_kept_then_published_with_its_delivery_id_as_message_id() -> None:
    parts = Parts()
    submission = JobSubmission(job_id="job-00001", to=["a@b.example"], subject="Scan")
    accepted = await parts.intake.submit(DEVICE, submission, [upload()])
    delivery_id = scoped_job_id("t1", "job-00001")
    assert (accepted.job_id, accepted.delivery_id, accepted.status, accepted.duplicate) == (
        "job-00001",
        delivery_id,
        "queued",
        False,
    )
    [(subject, command, msg_id)] = parts.publisher.published
    assert subject.startswith(streams.JOB_SUBJECT_PREFIX) and msg_id == delivery_id
    assert command.model_dump()["job_id"] == delivery_id
    [attachment] = command.model_dump()["attachments"]
    assert attachment["object_name"].startswith(f"{delivery_id}/")
    assert attachment["object_name"] in parts.attachments.objects
    stored = await parts.store.job(delivery_id)
    assert stored is not None and (stored["status"], stored["submitted_at"]) == ("queued", NOW)
    assert stored["job_id"] == "job-00001"


async def test_without_a_job_id_the_job_gets_a_fresh_one_it_travels_under() -> None:
    parts = Parts()
    accepted = await parts.intake.submit(DEVICE, JobSubmission(to=["a@b.example"]), [])
    assert accepted.job_id == accepted.delivery_id and len(accepted.job_id) == 32
    [(_, command, msg_id)] = parts.publisher.published
    assert msg_id == command.model_dump()["job_id"] == accepted.job_id


async def test_internet_fax_is_sent_as_the_devices_machine_address() -> None:
    parts = Parts()
    fax = JobSubmission(function=JobFunction.INTERNET_FAX_TX, to=["fax@b.example"])
    await parts.intake.submit(DEVICE, fax, [])
    [(_, command, _)] = parts.publisher.published
    assert command.model_dump()["machine_address"] == "admin@t1.example"


async def test_when_the_bus_is_down_nothing_is_kept() -> None:
    parts = Parts()
    parts.publisher.down = True
    with pytest.raises(EventBusUnavailable) as refused:
        await parts.intake.submit(DEVICE, JobSubmission(job_id="job-00002", to=["a@b.example"]), [upload()])
    assert refused.value.title == "Job queue unavailable" and "submit it again" in refused.value.detail
    assert parts.store.jobs == {} and parts.attachments.objects == {}


async def test_a_publish_that_times_out_after_storing_keeps_the_job_and_its_attachments() -> None:
    """The acknowledgement was lost, the command is in the stream: its attachments must stay.
    The device sends the job again; JetStream drops it as a duplicate, so the queued command
    is the first, with its attachments intact, and only the second's are removed."""
    parts = Parts()
    submission = JobSubmission(job_id="job-00010", to=["a@b.example"])
    parts.publisher.timing_out = "after storing"
    with pytest.raises(EventBusUnavailable) as unconfirmed:
        await parts.intake.submit(DEVICE, submission, [upload(data=b"%PDF-1.4 first")])
    assert "same job id" in unconfirmed.value.detail
    [(_, command, _)] = parts.publisher.published
    [name] = [a["object_name"] for a in command.model_dump()["attachments"]]
    assert parts.attachments.objects == {name: b"%PDF-1.4 first"}
    delivery_id = scoped_job_id("t1", "job-00010")
    kept = await parts.store.job(delivery_id)
    assert kept is not None and kept["status"] == "queued" and kept["unconfirmed"]

    parts.publisher.timing_out = None
    again = await parts.intake.submit(DEVICE, submission, [upload(data=b"%PDF-1.4 second")])
    assert again.duplicate and again.delivery_id == delivery_id and again.status == "queued"
    assert len(parts.publisher.published) == 1 and parts.attachments.objects == {name: b"%PDF-1.4 first"}
    confirmed = await parts.store.job(delivery_id)
    assert confirmed is not None and not confirmed["unconfirmed"]
    # Confirmed now: a third send is answered from the record, storing nothing.
    third = await parts.intake.submit(DEVICE, submission, [upload()])
    assert third.duplicate and len(parts.attachments.objects) == 1


async def test_a_publish_that_timed_out_before_storing_is_queued_when_sent_again() -> None:
    parts = Parts()
    submission = JobSubmission(job_id="job-00011", to=["a@b.example"])
    parts.publisher.timing_out = "before storing"
    with pytest.raises(EventBusUnavailable):
        await parts.intake.submit(DEVICE, submission, [upload(data=b"first")])
    assert parts.publisher.published == [] and len(parts.attachments.objects) == 1

    parts.publisher.timing_out = None
    again = await parts.intake.submit(DEVICE, submission, [upload(data=b"second")])
    assert not again.duplicate and again.status == "queued"
    [(_, command, _)] = parts.publisher.published
    [name] = [a["object_name"] for a in command.model_dump()["attachments"]]
    assert parts.attachments.objects[name] == b"second"
    job = await parts.store.job(again.delivery_id)
    assert job is not None and not job["unconfirmed"]


async def test_a_job_kept_unconfirmed_is_not_forgotten_when_the_bus_then_refuses() -> None:
    parts = Parts()
    submission = JobSubmission(job_id="job-00012", to=["a@b.example"])
    parts.publisher.timing_out = "after storing"
    with pytest.raises(EventBusUnavailable):
        await parts.intake.submit(DEVICE, submission, [upload(data=b"first")])
    parts.publisher.timing_out, parts.publisher.down = None, True
    with pytest.raises(EventBusUnavailable):
        await parts.intake.submit(DEVICE, submission, [upload(data=b"second")])
    assert list(parts.attachments.objects.values()) == [b"first"]
    assert await parts.store.job(scoped_job_id("t1", "job-00012")) is not None


class UnmarkableStore(InMemoryGatewayStore):
    async def mark_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        raise ConnectionError("the database is gone too")


async def test_a_record_that_cannot_be_marked_after_a_timeout_still_keeps_the_attachments() -> None:
    parts = Parts()
    parts.intake.jobs = parts.store = UnmarkableStore()
    parts.publisher.timing_out = "after storing"
    with pytest.raises(EventBusUnavailable):
        await parts.intake.submit(DEVICE, JobSubmission(job_id="job-00013", to=["a@b.example"]), [upload()])
    assert len(parts.attachments.objects) == 1


async def test_an_attachment_that_cannot_be_stored_leaves_no_job() -> None:
    parts = Parts()
    parts.attachments.down = True
    with pytest.raises(EventBusUnavailable):
        await parts.intake.submit(DEVICE, JobSubmission(job_id="job-00003", to=["a@b.example"]), [upload()])
    assert parts.store.jobs == {} and parts.publisher.published == []


async def test_a_refused_attachment_removes_those_already_stored() -> None:
    parts = Parts()
    files = [upload(), upload("setup.exe", "application/x-msdownload")]
    with pytest.raises(AttachmentTypeRefused):
        await parts.intake.submit(DEVICE, JobSubmission(to=["a@b.example"]), files)
    assert parts.attachments.objects == {} and parts.store.jobs == {} and parts.publisher.published == []


class CountingAttachments(InMemoryAttachments):
    """Counts what was stored and removed, to show a duplicate does neither."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = self.deletes = 0

    async def put(self, object_name: str, upload: UploadFile, limit: int) -> AttachmentRef:
        self.puts += 1
        return await super().put(object_name, upload, limit)

    async def delete(self, object_name: str) -> None:
        self.deletes += 1
        await super().delete(object_name)


async def test_a_job_id_sent_again_is_the_same_job_and_stores_nothing() -> None:
    parts = Parts()
    parts.attachments = parts.intake.attachments = CountingAttachments()
    submission = JobSubmission(job_id="job-00004", to=["a@b.example"])
    await parts.intake.submit(DEVICE, submission, [upload()])
    again = await parts.intake.submit(DEVICE, submission, [upload(data=b"%PDF-1.4 again")])
    assert again.duplicate and again.status == "queued" and len(parts.publisher.published) == 1
    # The duplicate was known before anything was stored: nothing stored, nothing removed.
    assert (parts.attachments.puts, parts.attachments.deletes) == (1, 0)
    [(_, command, _)] = parts.publisher.published
    assert list(parts.attachments.objects) == [command.model_dump()["attachments"][0]["object_name"]]


async def test_another_tenants_job_id_is_another_job() -> None:
    parts = Parts()
    submission = JobSubmission(job_id="job-00005", to=["a@b.example"])
    mine = await parts.intake.submit(DEVICE, submission, [upload()])
    theirs = await parts.intake.submit(Device("mfp-1", "t2"), submission, [upload(data=b"%PDF-1.4 theirs")])
    assert theirs.job_id == mine.job_id and theirs.delivery_id != mine.delivery_id
    assert not theirs.duplicate and theirs.status == "queued"
    [(_, first, _), (_, second, _)] = parts.publisher.published
    names = [c.model_dump()["attachments"][0]["object_name"] for c in (first, second)]
    assert names[0] != names[1] and sorted(parts.attachments.objects) == sorted(names)


async def test_a_job_queued_before_ids_were_scoped_is_found_by_its_old_id() -> None:
    parts = Parts()
    await parts.store.record_job(
        {"_id": "job-00006", "tenant_id": "t1", "status": "sent", "submitted_at": NOW}
    )
    again = await parts.intake.submit(
        DEVICE, JobSubmission(job_id="job-00006", to=["a@b.example"]), [upload()]
    )
    assert again.duplicate and again.status == "sent" and parts.attachments.objects == {}
    # Another tenant's old job of that id is not this tenant's: a new job, nothing said.
    other = await parts.intake.submit(
        Device("mfp-9", "t2"), JobSubmission(job_id="job-00006", to=["a@b.example"]), []
    )
    assert not other.duplicate and other.delivery_id == scoped_job_id("t2", "job-00006")


async def test_a_job_jetstream_already_holds_keeps_the_first_attachments() -> None:
    """The record was forgotten after a publish that timed out but reached the stream: the
    device sends the job again, JetStream drops it as a duplicate, and only the attachments
    of this second submission (which nothing refers to) are removed."""
    parts = Parts()
    submission = JobSubmission(job_id="job-00007", to=["a@b.example"])
    await parts.intake.submit(DEVICE, submission, [upload()])
    parts.store.jobs.clear()
    again = await parts.intake.submit(DEVICE, submission, [upload(data=b"%PDF-1.4 again")])
    assert again.duplicate
    [(_, command, _)] = parts.publisher.published
    assert list(parts.attachments.objects) == [command.model_dump()["attachments"][0]["object_name"]]


async def test_a_runaway_device_waits_and_others_do_not() -> None:
    parts = Parts(burst=2)
    job = JobSubmission(to=["a@b.example"])
    await parts.intake.submit(DEVICE, job, [])
    await parts.intake.submit(DEVICE, job, [])
    with pytest.raises(RateLimited) as limited:
        await parts.intake.submit(DEVICE, job, [])
    assert limited.value.retry_after_s == 2 and "more than 2 jobs" in limited.value.detail
    await parts.intake.submit(Device("mfp-2", "t1"), job, [])
    parts.now[0] += 1
    await parts.intake.submit(DEVICE, job, [])


async def test_a_job_whose_token_the_edge_took_is_not_charged_twice() -> None:
    """SMTP takes the device's token at MAIL FROM, before the message is read."""
    parts = Parts(burst=1)
    job = JobSubmission(to=["a@b.example"])
    assert parts.intake.limiter.take(f"{DEVICE.tenant_id}/{DEVICE.device_id}") is None  # at MAIL FROM
    await parts.intake.submit(DEVICE, job, [], channel="smtp", rate_taken=True)
    with pytest.raises(RateLimited):
        await parts.intake.submit(DEVICE, job, [])


async def test_a_submission_over_the_limits_stores_nothing_and_spends_no_rate() -> None:
    parts = Parts(burst=1, max_attachments=2, max_submission_bytes=100, tenant_bytes_in_flight=150)
    job = JobSubmission(to=["a@b.example"])
    with pytest.raises(TooManyAttachments, match="at most 2"):
        await parts.intake.submit(DEVICE, job, [upload(), upload(), upload()])
    with pytest.raises(SubmissionTooLarge, match="at most 100 bytes"):
        await parts.intake.submit(DEVICE, job, [upload(data=b"x" * 60), upload(data=b"y" * 41)])
    assert parts.attachments.objects == {} and parts.store.jobs == {} and parts.publisher.published == []
    await parts.intake.submit(DEVICE, job, [upload(data=b"x" * 100)])  # the rate's one job


async def test_a_tenant_past_its_bytes_in_flight_waits_while_another_edge_holds_them() -> None:
    parts = Parts(max_submission_bytes=100, tenant_bytes_in_flight=150)
    job = JobSubmission(to=["a@b.example"])
    with parts.intake.in_flight.hold("t1", "mfp-2") as receiving:  # another device's body being read
        receiving.grow_to(100)
        with pytest.raises(TooManyBytesInFlight):
            await parts.intake.submit(DEVICE, job, [upload(data=b"x" * 60)], channel="smtp")
        await parts.intake.submit(Device("mfp-9", "t2"), job, [upload(data=b"x" * 100)], channel="smtp")
        await parts.intake.submit(Device("mfp-2", "t1"), job, [upload(data=b"x" * 50)], hold=receiving)
    assert parts.intake.in_flight.held("t1") == 0 and parts.intake.in_flight.held("t2") == 0
    assert len(parts.publisher.published) == 2
    await parts.intake.submit(DEVICE, job, [upload(data=b"x" * 100)], channel="smtp")


def test_an_unreadable_job_part_says_what_is_wrong() -> None:
    with pytest.raises(InvalidJob, match="function"):
        read_submission('{"function": "teleport"}')
    with pytest.raises(InvalidJob):
        read_submission("not json")


async def test_a_login_user_outside_the_tenants_mail_domains_is_refused_and_nothing_is_kept() -> None:
    """The login user is whom the sign-in e-mail goes to, through the operator's relay: a
    device naming any address would make the relay mail it."""
    tenant = TenantSettings(tenant_id="t1", administrator_address="admin@t1.example")

    async def tenant_of(tenant_id: str) -> TenantSettings | None:
        return tenant if tenant_id == "t1" else None

    parts = Parts()
    parts.intake.tenant_of = tenant_of
    outside = JobSubmission(to=["a@b.example"], login_user="victim@anything.example")
    with pytest.raises(OutsideTenantDomains, match="mail domains"):
        await parts.intake.submit(DEVICE, outside, [upload()])
    assert parts.publisher.published == [] and parts.attachments.objects == {}
    inside = JobSubmission(to=["a@b.example"], login_user="Ann@T1.example")
    assert (await parts.intake.submit(DEVICE, inside, [upload()])).status == "queued"
    with pytest.raises(OutsideTenantDomains):  # a device of no tenant any more: nobody's user
        await parts.intake.submit(Device("mfp-1", "gone"), inside, [upload()])
