"""Jobs: devices submit them and follow their status; administrators search and count them,
and watch the queues."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fleetmail_contracts.jobs import JobFunction

from ...errors import (
    AdministratorUnauthorized,
    AttachmentTooLarge,
    AttachmentTypeRefused,
    BodyReadTimeout,
    DeviceUnauthorized,
    EventBusUnavailable,
    Forbidden,
    InvalidAddress,
    InvalidJob,
    JobNotFound,
    OutsideTenantDomains,
    RateLimited,
    SubmissionTooLarge,
    TenantNotFound,
    TooManyAttachments,
    TooManyBytesInFlight,
    TooManyRecipients,
    UnreadableRequest,
    UnsafeHeader,
)
from ...schemas import JobAccepted, JobDetail, JobStatus, JobSummary, QueueView
from ...use_cases.intake import read_submission
from ..deps import AdminDep, DeviceDep, ReadableTenant, ServicesDep
from ..openapi import job_form_body
from ..problems import documented
from ..uploads import job_form

admin = APIRouter(
    prefix="/v1/admin", tags=["admin"], responses=documented(AdministratorUnauthorized, Forbidden)
)
devices = APIRouter(prefix="/v1/jobs", tags=["devices"], responses=documented(DeviceUnauthorized))


@admin.get("/tenants/{tenant_id}/jobs", responses=documented(TenantNotFound))
async def search_jobs(
    tenant: ReadableTenant,
    services: ServicesDep,
    status: str | None = None,
    device_id: str | None = None,
    function: JobFunction | None = None,
    before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    since: Annotated[datetime | None, Query(description="Only jobs submitted at or after this")] = None,
    until: Annotated[datetime | None, Query(description="Only jobs submitted before this")] = None,
) -> list[JobStatus]:
    """The tenant's jobs, newest first; pass the last one's `submitted_at` as `before` for more."""
    return await services.jobs.search(
        tenant.tenant_id, status, device_id, function, before, limit, since=since, until=until
    )


@admin.get("/tenants/{tenant_id}/jobs/summary", responses=documented(TenantNotFound))
async def job_summary(
    tenant: ReadableTenant, services: ServicesDep, hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24
) -> JobSummary:
    """How many of the tenant's jobs of the last `hours` are in each status."""
    return await services.jobs.summary(tenant.tenant_id, hours)


@admin.get("/tenants/{tenant_id}/jobs/{delivery_id}", responses=documented(TenantNotFound, JobNotFound))
async def job_detail(delivery_id: str, tenant: ReadableTenant, services: ServicesDep) -> JobDetail:
    """One of the tenant's jobs by its delivery id, with its timeline (received, each attempt
    and the mail server's replies, sent or failed, resent)."""
    return await services.jobs.detail(tenant.tenant_id, delivery_id)


@admin.get("/queues", responses=documented(EventBusUnavailable))
async def queues(admin: AdminDep, services: ServicesDep) -> list[QueueView]:
    """Each durable consumer's lag: messages waiting, delivered but unacknowledged, redelivered.
    The queues hold every tenant's jobs: a key limited to some tenants gets an empty list."""
    return await services.queues.views(admin)


@devices.post(
    "",
    status_code=202,
    responses=documented(
        UnreadableRequest,
        InvalidJob,
        InvalidAddress,
        OutsideTenantDomains,
        TooManyRecipients,
        UnsafeHeader,
        AttachmentTooLarge,
        SubmissionTooLarge,
        TooManyAttachments,
        AttachmentTypeRefused,
        RateLimited,
        TooManyBytesInFlight,
        BodyReadTimeout,
        EventBusUnavailable,
    ),
    openapi_extra=job_form_body(),
)
async def submit_job(device: DeviceDep, services: ServicesDep, request: Request) -> JobAccepted:
    """A job from a device: the `job` part says what to send, the `files` parts are its
    attachments. The body is read only after the device is authenticated, and refused as soon
    as it passes the submission limits (413) or the device's or tenant's bytes in flight
    (507), or when it stops arriving (408)."""
    intake = services.intake
    with intake.in_flight.hold(device.tenant_id, device.device_id) as hold:
        async with job_form(request, intake.settings, hold) as (job, files):
            return await intake.submit(device, read_submission(job), files, hold=hold)


@devices.get("/{job_id}", responses=documented(JobNotFound))
async def job_status(job_id: str, device: DeviceDep, services: ServicesDep) -> JobStatus:
    return await services.jobs.status_for(device, job_id)
