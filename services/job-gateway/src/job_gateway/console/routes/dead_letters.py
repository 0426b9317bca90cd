"""A tenant's dead letters: the list a page at a time, sending one again, and sending again
all that match a filter (reason, time range) after a confirmation, with what was resent and
what was skipped and why.

The API's use cases (`services.dead_letters.page / resend / resend_matching`): the same
rules (documents kept, a job resent once) whichever edge asks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from fleetmail_contracts.mail_events import FailureReason
from pydantic import ValidationError

from ...domain import Access
from ...errors import DeadLetterNotFound, DocumentsGone, InvalidRequest
from ...schemas import DeadLetterResend, summarise
from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render
from .jobs import when

router = APIRouter(prefix="/tenants/{tenant_id}/dead-letters", dependencies=[Protected])

PAGE = 50
REASONS = [reason.value for reason in FailureReason]


def _resend(reason: str, since: str, until: str, before: int | None = None) -> DeadLetterResend:
    """The bulk resend's filter from the form (times in UTC); a bad one is `InvalidRequest`."""
    try:
        return DeadLetterResend(
            reason=reason or None, since=when(since, "since"), until=when(until, "until"), before=before
        )
    except ValidationError as exc:
        raise InvalidRequest(summarise(exc.errors())) from None


@router.get("", name="dead_letters")
async def dead_letters_page(
    request: Request,
    tenant_id: str,
    user: ConsoleUserDep,
    services: ServicesDep,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    user.require(Access.READ, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    page = await services.dead_letters.page(tenant_id, before, PAGE)
    return render(
        request, "dead_letters.html", user, tenant=tenant, page=page, before=before, reasons=REASONS
    )


@router.post("/{sequence}/resend", name="dead_letter_resend")
async def resend_one(
    request: Request,
    tenant_id: str,
    sequence: Annotated[int, Path(ge=1)],
    user: ConsoleUserDep,
    services: ServicesDep,
) -> Response:
    """Send one dead job again; to its page, where its timeline shows it queued again."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    try:
        accepted = await services.dead_letters.resend(tenant_id, sequence)
    except (DocumentsGone, DeadLetterNotFound) as exc:
        page = await services.dead_letters.page(tenant_id, None, PAGE)
        status = 410 if isinstance(exc, DocumentsGone) else 404
        return render(
            request,
            "dead_letters.html",
            user,
            status,
            tenant=tenant,
            page=page,
            reasons=REASONS,
            error=exc.detail,
        )
    return RedirectResponse(
        request.url_for("job", tenant_id=tenant_id, delivery_id=accepted.delivery_id), status_code=303
    )


@router.get("/resend", name="dead_letters_confirm")
async def confirm_resend(
    request: Request,
    tenant_id: str,
    user: ConsoleUserDep,
    services: ServicesDep,
    reason: Annotated[str, Query(max_length=64)] = "",
    since: str = "",
    until: str = "",
) -> Response:
    """What a bulk resend will do, and the button that does it."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    wanted = _resend(reason, since, until)
    form = {"reason": reason, "since": since, "until": until}
    return render(request, "dead_letters_confirm.html", user, tenant=tenant, wanted=wanted, form=form)


@router.post("/resend", name="dead_letters_resend")
async def resend_matching(
    request: Request,
    tenant_id: str,
    user: ConsoleUserDep,
    services: ServicesDep,
    reason: Annotated[str, Form(max_length=64)] = "",
    since: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
    before: Annotated[int | None, Form(ge=1)] = None,
) -> Response:
    """The bulk resend; its report (resent, skipped and why) is the answer, with a button for
    older dead letters when the call stopped before the end of the stream."""
    user.require(Access.WRITE, tenant_id)
    tenant = await services.tenants.read(user.administrator, tenant_id)
    report = await services.dead_letters.resend_matching(tenant_id, _resend(reason, since, until, before))
    form = {"reason": reason, "since": since, "until": until}
    return render(request, "dead_letters_report.html", user, tenant=tenant, report=report, form=form)
