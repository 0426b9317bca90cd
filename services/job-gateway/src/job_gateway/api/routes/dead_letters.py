"""A tenant's dead letters: jobs that failed for good, and sending them again."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ...errors import (
    AdministratorUnauthorized,
    DeadLetterNotFound,
    DocumentsGone,
    EventBusUnavailable,
    Forbidden,
    TenantNotFound,
)
from ...schemas import DeadLetterPage, DeadLetterResend, DeadLetterResendReport, JobAccepted
from ..deps import ReadableTenant, ServicesDep, WritableTenant
from ..problems import documented

router = APIRouter(
    prefix="/v1/admin/tenants/{tenant_id}/dead-letters",
    tags=["admin"],
    responses=documented(AdministratorUnauthorized, Forbidden, TenantNotFound, EventBusUnavailable),
)


@router.get("")
async def list_dead_letters(
    tenant: ReadableTenant,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, description="The `next` of the previous page; none: from the newest")
    ] = None,
) -> DeadLetterPage:
    """Jobs that failed for good or ran out of retries, newest first, with the reason, a page
    at a time: follow `next` (as `before`) until it is null. A page reads a bounded stretch of
    the dead-letter stream, so it may hold fewer than `limit`, or none, and still have a `next`."""
    return await services.dead_letters.page(tenant.tenant_id, before, limit)


@router.post("/resend")
async def resend_dead_letters(
    wanted: DeadLetterResend, tenant: WritableTenant, services: ServicesDep
) -> DeadLetterResendReport:
    """Send again, in one call, the tenant's dead letters of a reason and a time range (after
    fixing their cause), newest first, by the same rule as one at a time: a job whose documents
    are no longer kept, or that was already sent again, is skipped and the report says why.
    A call handles at most `limit` and reads a bounded stretch: follow `next` (as `before`)."""
    return await services.dead_letters.resend_matching(tenant.tenant_id, wanted)


@router.post("/{sequence}/resend", status_code=202, responses=documented(DeadLetterNotFound, DocumentsGone))
async def resend_dead_letter(
    sequence: Annotated[int, Path(ge=1)], tenant: WritableTenant, services: ServicesDep
) -> JobAccepted:
    """Send a dead job again (after fixing its cause: a grant, a setting, a mailbox). Its
    documents are kept for `FLEETMAIL_DEAD_LETTER_RETENTION_DAYS` after it failed: later, or once
    a resend was sent, the answer is 410 and the device must submit the job again."""
    return await services.dead_letters.resend(tenant.tenant_id, sequence)
