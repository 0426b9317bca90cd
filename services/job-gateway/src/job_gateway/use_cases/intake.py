"""Taking a job in, the same way whether it came over HTTP or SMTP.

Checks first (the device's rate, recipients, header safety, attachment types, the command's
own validation), attachments streamed into the Object Store, the job recorded, then
published to JetStream with its job id as `Nats-Msg-Id`. Nothing is left half-done: if
anything fails after attachments were stored, they are removed; if the bus is unavailable,
the caller is told to try again (`EventBusUnavailable`) and the job record is forgotten.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fleetmail_contracts import streams
from fleetmail_contracts.jobs import JOB_COMMANDS, AttachmentRef, JobFunction, job_subject
from fleetmail_runtime.bus import BusUnavailable
from opentelemetry import trace
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ..domain import Device, check_attachment_type, check_submission, retry_after_s
from ..errors import EventBusUnavailable, GatewayError, InvalidJob, JobIdTaken, RateLimited
from ..ports import Attachments, JobStore, Publisher
from ..ratelimit import RateLimiter
from ..schemas import JobAccepted, JobSubmission, summarise
from ..settings import GatewaySettings
from ..telemetry import JOBS_RECEIVED, JOBS_REFUSED

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
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.attachments = attachments
        self.publisher = publisher
        self.provider_of = provider_of
        self.limiter = limiter or RateLimiter(settings.device_rate_per_s, settings.device_rate_burst)
        self.clock = clock

    async def submit(
        self,
        device: Device,
        submission: JobSubmission,
        files: Sequence[UploadFile],
        channel: str = "http",
    ) -> JobAccepted:
        try:
            accepted = await self._submit(device, submission, files)
        except GatewayError as error:
            JOBS_REFUSED.add(1, {"reason": error.code, "channel": channel})
            raise
        # Operators find a job's trace by its id.
        trace.get_current_span().set_attribute("fleetmail.job_id", accepted.job_id)
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

    async def _submit(
        self, device: Device, submission: JobSubmission, files: Sequence[UploadFile]
    ) -> JobAccepted:
        # Device ids are per tenant: the bucket is the tenant's device's.
        wait = self.limiter.take(f"{device.tenant_id}/{device.device_id}")
        if wait is not None:
            seconds = retry_after_s(wait)
            raise RateLimited(
                f"this device sent more than {self.limiter.burst} jobs at once; try again in {seconds} s",
                retry_after_s=seconds,
            )
        check_submission(submission, self.settings.max_recipients)
        job_id = submission.job_id or uuid.uuid4().hex
        # Each submission's attachments have names of their own: a job sent again (the same
        # job id) must not overwrite, then remove, the attachments of the job already queued.
        prefix = f"{job_id}/{uuid.uuid4().hex[:12]}"
        refs: list[AttachmentRef] = []
        try:
            for upload in files:
                check_attachment_type(
                    upload.filename, upload.content_type, self.settings.allowed_attachment_types
                )
                name = f"{prefix}/{len(refs)}"
                refs.append(await self.attachments.put(name, upload, self.settings.max_attachment_bytes))
            return await self._record_and_publish(device, submission, job_id, refs)
        except BaseException as exc:
            await self._remove(refs)
            if isinstance(exc, BusUnavailable):
                raise queue_unavailable() from exc  # e.g. storing an attachment failed
            raise

    async def _record_and_publish(
        self, device: Device, submission: JobSubmission, job_id: str, refs: list[AttachmentRef]
    ) -> JobAccepted:
        fields = submission.model_dump(exclude_none=True, exclude={"function", "job_id"})
        if submission.function is JobFunction.INTERNET_FAX_TX and device.machine_address:
            fields.setdefault("machine_address", device.machine_address)
        now = self.clock()
        try:
            command = JOB_COMMANDS[submission.function](
                job_id=job_id,
                tenant_id=device.tenant_id,
                device_id=device.device_id,
                submitted_at=now,
                attachments=tuple(refs),
                **fields,
            )
        except ValidationError as exc:
            raise InvalidJob(summarise(exc.errors())) from None
        recorded = await self.jobs.record_job(
            {
                "_id": job_id,
                "tenant_id": device.tenant_id,
                "device_id": device.device_id,
                "function": submission.function.value,
                "status": "queued",
                "submitted_at": now,
                "updated_at": now,
            }
        )
        if not recorded:
            existing = await self.jobs.job(job_id)
            if existing is None or existing["tenant_id"] != device.tenant_id:
                raise JobIdTaken("that job id is in use")
            await self._remove(refs)
            return JobAccepted(job_id=job_id, status=existing["status"], duplicate=True)
        try:
            duplicate = await self.publisher.publish(
                command,
                job_subject(submission.function),
                stream=streams.JOBS_STREAM,
                msg_id=job_id,
                timeout_s=self.settings.publish_timeout_s,
            )
        except BusUnavailable:
            await self.jobs.forget_job(job_id)
            raise
        return JobAccepted(job_id=job_id, status="queued", duplicate=duplicate)

    async def _remove(self, refs: list[AttachmentRef]) -> None:
        for ref in refs:
            try:
                await self.attachments.delete(ref.object_name)
            except BusUnavailable:
                log.warning("could not remove attachment %s after a failed submission", ref.object_name)
