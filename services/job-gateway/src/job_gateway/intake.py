"""Taking a job in, the same way whether it came over HTTP or SMTP.

Checks first (recipients, header safety, the command's own validation), attachments
streamed into the Object Store, the job recorded, then published to JetStream with its
job id as `Nats-Msg-Id`. Nothing is left half-done: if anything fails after attachments
were stored, they are removed; if the bus is unavailable, the caller is told to try again
(HTTP 503 with Retry-After, SMTP 451) and the job record is forgotten.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import UploadFile
from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.addresses import is_address
from fleetmail_contracts.jobs import JOB_COMMANDS, AttachmentRef, JobFunction, job_subject
from nats.errors import Error as NatsError
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import DuplicateKeyError

from .problems import Problem
from .ratelimit import RateLimiter
from .settings import GatewaySettings
from .store import GatewayStore
from .telemetry import JOBS_RECEIVED, JOBS_REFUSED

log = logging.getLogger("job-gateway")
UNSAFE = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True)
class Device:
    device_id: str
    tenant_id: str
    machine_address: str | None = None
    """Its Internet Fax sender, set by an administrator (checked against the administrator address)."""


class JobSubmission(BaseModel):
    """The `job` part of a job submission (multipart form field, JSON)."""

    model_config = ConfigDict(extra="forbid")

    function: JobFunction = JobFunction.SCAN_TO_EMAIL
    job_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$", description="Idempotency key")
    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []
    subject: str | None = None
    body: str | None = None
    login_user: str | None = None
    requested_from: str | None = None
    document_url: str | None = None
    machine_address: str | None = None
    user_box: str | None = None
    application: str | None = None
    event: str | None = None
    counters: dict[str, int] | None = None
    sender_fax_number: str | None = None
    tsi: str | None = None
    status: str | None = None
    result: str | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: str
    duplicate: bool = False


def bus_unavailable() -> Problem:
    return Problem(
        503,
        "bus-unavailable",
        "Job queue unavailable",
        "the job could not be queued; nothing was kept, submit it again",
        {"Retry-After": "5"},
    )


def summarise(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


class JobIntake:
    def __init__(
        self,
        broker: NatsBroker,
        store: GatewayStore,
        settings: GatewaySettings,
        provider_of: Callable[[str], str] = lambda _tenant: "unknown",
    ) -> None:
        self.broker = broker
        self.store = store
        self.settings = settings
        self.provider_of = provider_of
        self.limiter = RateLimiter(settings.device_rate_per_s, settings.device_rate_burst)

    def check(self, submission: JobSubmission) -> None:
        recipients = submission.to + submission.cc + submission.bcc
        named = [submission.login_user, submission.requested_from, submission.machine_address]
        for address in [*recipients, *(a for a in named if a)]:
            if not UNSAFE.search(address) and not is_address(address):
                raise Problem(
                    422, "invalid-address", "Invalid address", f"not an e-mail address: {address[:100]!r}"
                )
        if len(recipients) > self.settings.max_recipients:
            raise Problem(
                422, "too-many-recipients", "Too many recipients", f"at most {self.settings.max_recipients}"
            )
        for value in [
            *recipients,
            submission.subject or "",
            submission.login_user or "",
            submission.requested_from or "",
        ]:
            if UNSAFE.search(value):
                raise Problem(
                    422,
                    "unsafe-header",
                    "Unsafe header value",
                    "line breaks and NUL are not allowed in header fields",
                )

    def check_type(self, upload: UploadFile) -> None:
        allowed = self.settings.allowed_attachment_types
        content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if "*" not in allowed and content_type not in allowed:
            raise Problem(
                415,
                "attachment-type-refused",
                "Attachment type refused",
                f"{upload.filename}: {content_type} is not accepted (FLEETMAIL_GATEWAY_ALLOWED_ATTACHMENT_TYPES)",
            )

    async def submit(
        self, device: Device, submission: JobSubmission, files: list[UploadFile], channel: str = "http"
    ) -> JobAccepted:
        try:
            accepted = await self._submit(device, submission, files)
        except Problem as problem:
            JOBS_REFUSED.add(1, {"reason": problem.kind, "channel": channel})
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
        self, device: Device, submission: JobSubmission, files: list[UploadFile]
    ) -> JobAccepted:
        wait = self.limiter.take(device.device_id)
        if wait is not None:
            seconds = max(1, round(wait + 0.5))
            raise Problem(
                429,
                "rate-limited",
                "Too many jobs",
                f"this device sent more than {self.settings.device_rate_burst} jobs at once; try again in {seconds} s",
                {"Retry-After": str(seconds)},
            )
        self.check(submission)
        job_id = submission.job_id or uuid.uuid4().hex
        try:
            store = await self.broker.object_storage(streams.ATTACHMENTS_BUCKET)
        except (NatsError, TimeoutError) as exc:
            raise bus_unavailable() from exc
        refs: list[AttachmentRef] = []
        try:
            for upload in files:
                self.check_type(upload)
                refs.append(
                    await store_upload(store, job_id, len(refs), upload, self.settings.max_attachment_bytes)
                )
            fields = submission.model_dump(exclude_none=True, exclude={"function", "job_id"})
            if submission.function is JobFunction.INTERNET_FAX_TX and device.machine_address:
                fields.setdefault("machine_address", device.machine_address)
            try:
                command = JOB_COMMANDS[submission.function](
                    job_id=job_id,
                    tenant_id=device.tenant_id,
                    device_id=device.device_id,
                    submitted_at=datetime.now(UTC),
                    attachments=tuple(refs),
                    **fields,
                )
            except ValidationError as exc:
                raise Problem(422, "invalid-job", "Invalid job", summarise(exc)) from None
            now = datetime.now(UTC)
            try:
                await self.store.record_job(
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
            except DuplicateKeyError:
                existing = await self.store.job(job_id)
                if existing is None or existing["tenant_id"] != device.tenant_id:
                    raise Problem(409, "job-id-taken", "Job id taken", "that job id is in use") from None
                for ref in refs:
                    await store.delete(ref.object_name)
                return JobAccepted(job_id=job_id, status=existing["status"], duplicate=True)
            try:
                ack = await self.broker.publish(
                    command,
                    job_subject(submission.function),
                    headers={"Nats-Msg-Id": job_id},
                    stream=streams.JOBS_STREAM,
                    timeout=self.settings.publish_timeout_s,
                )
            except (NatsError, TimeoutError) as exc:
                await self.store.forget_job(job_id)
                raise bus_unavailable() from exc
        except BaseException as exc:
            for ref in refs:
                try:
                    await store.delete(ref.object_name)
                except (NatsError, TimeoutError):
                    log.warning("could not remove attachment %s after a failed submission", ref.object_name)
            if isinstance(exc, NatsError | TimeoutError):
                raise bus_unavailable() from exc  # e.g. storing an attachment failed
            raise
        return JobAccepted(job_id=job_id, status="queued", duplicate=bool(getattr(ack, "duplicate", False)))


async def store_upload(store: Any, job_id: str, index: int, upload: UploadFile, limit: int) -> AttachmentRef:
    """Stream one upload into the Object Store; it is never whole in memory."""
    digest = hashlib.sha256()
    size = 0
    while chunk := await upload.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
        if size > limit:
            raise Problem(
                413,
                "attachment-too-large",
                "Attachment too large",
                f"{upload.filename} is larger than {limit} bytes",
            )
    await upload.seek(0)
    name = f"{job_id}/{index}"
    await store.put(name, upload.file)
    return AttachmentRef(
        object_name=name,
        filename=(upload.filename or f"attachment-{index}").replace("\r", "").replace("\n", "")[:255]
        or "attachment",
        content_type=upload.content_type or "application/octet-stream",
        size=size,
        sha256=digest.hexdigest(),
    )
