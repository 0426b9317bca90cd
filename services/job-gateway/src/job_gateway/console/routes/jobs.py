"""A tenant's jobs: the filterable list (its rows polled by htmx, so a delivery shows without
a reload) and a job's page with its timeline (polled until the job is sent or failed).

The list is the API's job search (`services.jobs.search`), the page the API's job detail
(`services.jobs.detail`). Times in the filter are UTC, as the page shows them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from fleetmail_contracts.jobs import JobFunction
from pydantic import BaseModel

from ...domain import FINAL_STATUSES, Access
from ...errors import InvalidRequest
from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(prefix="/tenants/{tenant_id}/jobs", dependencies=[Protected])

PAGE = 50
POLL = "poll-tick from:body"
"""The live parts refresh on static/poll.js's tick: every 2 s while the page is visible."""
STATUSES = {
    "queued": "Queued",
    "accepted": "Sending",
    "paced": "Paced (waiting its turn)",
    "waiting_for_quota": "Waiting for the sending quota",
    "parked": "Waiting for a sign-in",
    "deferred": "Deferred (will try again)",
    "sent": "Sent",
    "failed": "Failed",
}
"""What a status (and a timeline entry of that kind) is called on the page."""
KINDS = STATUSES | {"received": "Received and queued", "resent": "Sent again from its dead letter"}


def when(text: str, field: str) -> datetime | None:
    """A `datetime-local` field (no zone: UTC, as the page says), or an ISO time."""
    if not text.strip():
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(f"{field}: {text!r} is not a date and time") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


class JobFilter(BaseModel):
    """The list's filters as the query string carries them (empty fields: no filter)."""

    status: str = ""
    device_id: str = ""
    function: str = ""
    since: str = ""
    until: str = ""
    before: str = ""

    def function_value(self) -> JobFunction | None:
        if not self.function:
            return None
        try:
            return JobFunction(self.function)
        except ValueError:
            raise InvalidRequest(f"function: {self.function!r} is not a job function") from None

    def query(self, **changes: str) -> str:
        fields = self.model_dump() | changes
        return urlencode({key: value for key, value in fields.items() if value})


Filter = Annotated[JobFilter, Query()]


async def _rows(services: ServicesDep, tenant_id: str, wanted: JobFilter) -> dict[str, Any]:
    jobs = await services.jobs.search(
        tenant_id,
        wanted.status or None,
        wanted.device_id or None,
        wanted.function_value(),
        when(wanted.before, "before"),
        PAGE,
        since=when(wanted.since, "since"),
        until=when(wanted.until, "until"),
    )
    older = wanted.query(before=jobs[-1].submitted_at.isoformat()) if len(jobs) == PAGE else None
    return {"jobs": jobs, "older": older, "wanted": wanted, "labels": STATUSES, "poll": POLL}


@router.get("", name="jobs")
async def jobs_page(
    request: Request, tenant_id: str, wanted: Filter, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    context: dict[str, Any] = {
        "tenant": tenant,
        "functions": list(JobFunction),
        "wanted": wanted,
        "labels": STATUSES,
    }
    try:
        context |= await _rows(services, tenant_id, wanted)
    except InvalidRequest as exc:
        return render(request, "jobs.html", user, 422, error=exc.detail, jobs=[], **context)
    return render(request, "jobs.html", user, **context)


@router.get("/rows", name="job_rows")
async def job_rows(
    request: Request, tenant_id: str, wanted: Filter, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """The list's rows alone, as the page polls them."""
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    return render(request, "job_rows.html", user, tenant=tenant, **await _rows(services, tenant_id, wanted))


@router.get("/{delivery_id}", name="job")
async def job_page(
    request: Request, tenant_id: str, delivery_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    job = await services.jobs.detail(tenant_id, delivery_id)
    return render(request, "job.html", user, tenant=tenant, job=job, **_timeline_context(job.status))


@router.get("/{delivery_id}/timeline", name="job_timeline")
async def job_timeline(
    request: Request, tenant_id: str, delivery_id: str, user: ConsoleUserDep, services: ServicesDep
) -> Response:
    """The job's status and timeline alone, as its page polls them until it is final."""
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    job = await services.jobs.detail(tenant_id, delivery_id)
    return render(request, "job_timeline.html", user, tenant=tenant, job=job, **_timeline_context(job.status))


def _timeline_context(status: str) -> dict[str, Any]:
    return {"labels": STATUSES, "kinds": KINDS, "poll": None if status in FINAL_STATUSES else POLL}
