"""Taking a job in, the same way whether it came over HTTP or SMTP.

Checks first (the attachments' count and total size, held against the tenant's bytes in
flight; the device's rate, recipients, header safety), then whether the job is one
already taken in — before anything is stored, so a job sent again touches nothing of the
queued one — then attachments streamed into the Object Store under names of this
submission alone, the job recorded, and published to JetStream with its delivery id as
`Nats-Msg-Id`. Nothing is left half-done: if anything fails after attachments were stored,
they are removed; if the bus refuses the job, the caller is told to try again
(`EventBusUnavailable`) and the job record is forgotten.

A publish that times out may have been stored all the same (its acknowledgement lost), so
then nothing is removed: the record is kept, marked `unconfirmed`, with the attachments the
stored command may name. The job sent again is published again under the same
`Nats-Msg-Id`: JetStream drops it as a duplicate if it holds the first (whose attachments
stay, the second's go), or stores it if it does not (the first's attachments are then
nobody's: kept rather than risk removing those of a command stored after all).

Job ids are the tenant's own: a job travels under its *delivery id* — `scoped_job_id(tenant,
job id)` when the device chose the id, a fresh random one otherwise — so the same id from
two tenants is two jobs and no answer says whether another tenant uses an id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from fleetmail_contracts import streams
from fleetmail_contracts.jobs import JOB_COMMANDS, AttachmentRef, JobFunction, job_subject
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.bus import BusUnavailable
from opentelemetry import trace
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ..domain import (
    Device,
    check_attachment_type,
    check_fax_document,
    check_login_user,
    check_submission,
    retry_after_s,
    scoped_job_id,
)
from ..errors import EventBusUnavailable, GatewayError, InvalidJob, RateLimited
from ..ports import Attachments, JobStore, Publisher
from ..ratelimit import RateLimiter
from ..schemas import JobAccepted, JobSubmission, summarise
from ..settings import GatewaySettings
from ..submission_limits import BytesInFlight, Hold, check_attachment_count, check_submission_size
from ..telemetry import JOBS_RECEIVED, JOBS_REFUSED
from .devices import DeviceDirectory
from .tsi_routing import TsiRouting

log = logging.getLogger("job-gateway")


def read_submission(raw: str) -> JobSubmission:
    """The `job` part of an HTTP submission (JSON), or `InvalidJob` saying what is wrong."""
    try:
        return JobSubmission.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidJob(summarise(exc.errors())) from None


def queue_unavailable() -> EventBusUnavailable:
    return EventBusUnavailable(
        "the job could not be queued; nothing was kept, submit it again", title="Job queue unavailable"
    )


def queue_unconfirmed() -> EventBusUnavailable:
    return EventBusUnavailable(
        "the job queue did not confirm the job in time; submit it again with the same job id "
        "(it is not sent twice)",
        title="Job queue unavailable",
    )


class _Unconfirmed(Exception):
    """The publish timed out: the job may be queued, its record and attachments are kept."""


def unconfirmed(job: dict[str, Any] | None) -> bool:
    """A job whose publish timed out and that no mail event has moved on since."""
    return job is not None and bool(job.get("unconfirmed")) and job["status"] == "queued"


class JobIntake:
    def __init__(
        self,
        settings: GatewaySettings,
        jobs: JobStore,
        attachments: Attachments,
        publisher: Publisher,
        provider_of: Callable[[str], str] = lambda _tenant: "unknown",
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tsi_routing: TsiRouting | None = None,
        sessions: DeviceDirectory | None = None,
        tenant_of: Callable[[str], Awaitable[TenantSettings | None]] | None = None,
    ) -> None:
        """`tsi_routing`: the tenants' TSI routing tables (None: TSI Routing jobs must name
        their recipients). `sessions`: where a login user's job is noted as a session on its
        device, for Auto Delete at the device's auto reset (None: not noted). `tenant_of`: the
        tenant's settings, to hold a job's login user to its mail domains (None: not checked)."""
        self.settings = settings
        self.jobs = jobs
        self.attachments = attachments
        self.publisher = publisher
        self.provider_of = provider_of
        self.limiter = limiter or RateLimiter(settings.device_rate_per_s, settings.device_rate_burst)
        self.clock = clock
        self.tsi_routing = tsi_routing
        self.sessions = sessions
        self.tenant_of = tenant_of
        self.in_flight = BytesInFlight(settings.tenant_bytes_in_flight, settings.device_share)

    async def submit(
        self,
        device: Device,
        submission: JobSubmission,
        files: Sequence[UploadFile],
        channel: str = "http",
        ids: tuple[str, str] | None = None,
        hold: Hold | None = None,
        rate_taken: bool = False,
    ) -> JobAccepted:
        """`rate_taken`: the edge took the device's token itself, before it read the job
        (SMTP, at MAIL FROM). `ids`: the delivery id and the id the same job had before ids were scoped by
        tenant, when the edge derives them itself (SMTP: from the Message-ID). `hold`: the
        bytes the edge already holds for the submission while it received it (an HTTP body,
        an SMTP message and its decoded parts), kept until the job is taken in or refused;
        without one, the attachments' bytes are held here while they are stored."""
        try:
            with ExitStack() as held:
                if hold is None:
                    hold = held.enter_context(self.in_flight.hold(device.tenant_id, device.device_id))
                accepted = await self._submit(device, submission, files, ids, hold, rate_taken)
        except GatewayError as error:
            JOBS_REFUSED.add(1, {"reason": error.code, "channel": channel})
            raise
        if submission.login_user and self.sessions is not None:
            await self._note_session(device, submission.login_user)
        # Operators find a job's trace by its id.
        trace.get_current_span().set_attribute("fleetmail.job_id", accepted.delivery_id)
        if not accepted.duplicate:
            JOBS_RECEIVED.add(
                1,
                {
                    "function": submission.function.value,
                    "provider": self.provider_of(device.tenant_id),
                    "tenant": device.tenant_id,
                    "channel": channel,
                },
            )
        return accepted

    async def _note_session(self, device: Device, user: str) -> None:
        """The job is taken in whatever happens here: a session not noted costs only its
        Auto Delete at the next auto reset."""
        assert self.sessions is not None
        try:
            await self.sessions.note_session(device, user)
        except Exception:
            log.exception("could not note %s's session on device %s", device.tenant_id, device.device_id)

    async def _submit(
        self,
        device: Device,
        submission: JobSubmission,
        files: Sequence[UploadFile],
        ids: tuple[str, str] | None,
        hold: Hold,
        rate_taken: bool = False,
    ) -> JobAccepted:
        check_attachment_count(len(files), self.settings.max_attachments)
        hold.grow_to(check_submission_size(files, self.settings.max_submission_bytes))
        # device ids are per tenant
        wait = None if rate_taken else self.limiter.take(f"{device.tenant_id}/{device.device_id}")
        if wait is not None:
            seconds = retry_after_s(wait)
            raise RateLimited(
                f"this device sent more than {self.limiter.burst} jobs at once; try again in {seconds} s",
                retry_after_s=seconds,
            )
        check_submission(submission, self.settings.max_recipients)
        if submission.login_user and self.tenant_of is not None:
            check_login_user(await self.tenant_of(device.tenant_id), submission.login_user)
        check_fax_document(submission.function, len(files))
        if ids is not None:
            delivery_id, legacy_id = ids
        elif submission.job_id:
            delivery_id, legacy_id = scoped_job_id(device.tenant_id, submission.job_id), submission.job_id
        else:
            delivery_id = legacy_id = uuid.uuid4().hex
        job_id = submission.job_id or delivery_id
        # A fresh random id is no job's yet: only an id the device or the edge chose is looked up.
        existing = (
            None
            if ids is None and not submission.job_id
            else await self._existing(device, delivery_id, legacy_id)
        )
        if existing is not None and not unconfirmed(existing):
            return JobAccepted(
                job_id=job_id, delivery_id=existing["_id"], status=existing["status"], duplicate=True
            )
        if submission.function is JobFunction.TSI_ROUTING and self.tsi_routing is not None:
            submission = await self.tsi_routing.routed(device.tenant_id, submission)
        # This submission's attachments have names of their own, which no other submission
        # (another tenant's, or this job sent again) can reach.
        prefix = f"{delivery_id}/{uuid.uuid4().hex}"
        refs: list[AttachmentRef] = []
        try:
            for upload in files:
                check_attachment_type(
                    upload.filename, upload.content_type, self.settings.allowed_attachment_types
                )
                name = f"{prefix}/{len(refs)}"
                refs.append(await self.attachments.put(name, upload, self.settings.max_attachment_bytes))
            accepted = await self._record_and_publish(device, submission, job_id, delivery_id, refs, existing)
        except _Unconfirmed as exc:
            raise queue_unconfirmed() from exc  # nothing removed: the queued job may name them
        except BaseException as exc:
            await self._remove(refs)
            if isinstance(exc, BusUnavailable):
                raise queue_unavailable() from exc  # e.g. storing an attachment failed
            raise
        if accepted.duplicate:
            await self._remove(refs)  # the job taken in first keeps its own attachments
        return accepted

    async def _existing(self, device: Device, delivery_id: str, legacy_id: str) -> dict[str, Any] | None:
        """The job already taken in under this id, if it is this tenant's: by its delivery
        id, or by the id it had before job ids were scoped by tenant."""
        for candidate in dict.fromkeys((delivery_id, legacy_id)):
            document = await self.jobs.job(candidate)
            if document is not None and document["tenant_id"] == device.tenant_id:
                return document
        return None

    async def _record_and_publish(
        self,
        device: Device,
        submission: JobSubmission,
        job_id: str,
        delivery_id: str,
        refs: list[AttachmentRef],
        existing: dict[str, Any] | None,
    ) -> JobAccepted:
        """`existing`: the record of this job kept after a publish that timed out, if any."""
        fields = submission.model_dump(exclude_none=True, exclude={"function", "job_id"})
        if submission.function is JobFunction.INTERNET_FAX_TX and device.machine_address:
            fields.setdefault("machine_address", device.machine_address)
        now = self.clock()
        try:
            command = JOB_COMMANDS[submission.function](
                job_id=delivery_id,
                tenant_id=device.tenant_id,
                device_id=device.device_id,
                submitted_at=now,
                attachments=tuple(refs),
                **fields,
            )
        except ValidationError as exc:
            raise InvalidJob(summarise(exc.errors())) from None
        recorded = existing is not None or await self.jobs.record_job(
            {
                "_id": delivery_id,
                "job_id": job_id,
                "tenant_id": device.tenant_id,
                "device_id": device.device_id,
                "function": submission.function.value,
                "status": "queued",
                "submitted_at": now,
                "updated_at": now,
            }
        )
        if not recorded:  # the same job, taken in by another request meanwhile
            existing = await self.jobs.job(delivery_id)
            status = existing["status"] if existing is not None else "queued"
            return JobAccepted(job_id=job_id, delivery_id=delivery_id, status=status, duplicate=True)
        try:
            duplicate = await self.publisher.publish(
                command,
                job_subject(submission.function),
                stream=streams.JOBS_STREAM,
                msg_id=delivery_id,
                timeout_s=self.settings.publish_timeout_s,
            )
        except BusUnavailable as exc:
            if exc.timed_out:
                await self._mark(delivery_id, unconfirmed=True)
                raise _Unconfirmed from exc
            if existing is None:  # a job kept after a timeout may still be queued: keep it
                await self.jobs.forget_job(delivery_id)
            raise
        if existing is not None:
            await self._mark(delivery_id, unconfirmed=None)
            if duplicate:  # the first publish was stored after all: that job, as it stands
                status = existing["status"]
                return JobAccepted(job_id=job_id, delivery_id=delivery_id, status=status, duplicate=True)
        return JobAccepted(job_id=job_id, delivery_id=delivery_id, status="queued", duplicate=duplicate)

    async def _mark(self, delivery_id: str, unconfirmed: bool | None) -> None:
        """Mark the record after a publish; a failure is logged, not raised: raising would
        remove attachments a queued command may name."""
        try:
            await self.jobs.mark_job(delivery_id, {"unconfirmed": unconfirmed})
        except Exception:
            log.exception("could not mark job %s unconfirmed=%s", delivery_id, unconfirmed)

    async def _remove(self, refs: list[AttachmentRef]) -> None:
        for ref in refs:
            try:
                await self.attachments.delete(ref.object_name)
            except BusUnavailable:
                log.warning("could not remove attachment %s after a failed submission", ref.object_name)
