"""Jobs after intake: their status (projected from mail events), the administrators' search
and summary, dead letters and resending them, and the queues' lag."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_contracts.jobs import JobFunction
from fleetmail_runtime.bus import BusUnavailable

from ..domain import Administrator, Device, scoped_job_id, sees_the_whole_fleet, status_update
from ..errors import DeadLetterNotFound, DocumentsGone, EventBusUnavailable, InvalidRequest, JobNotFound
from ..ports import Attachments, ConsumerLag, DeadLetterStream, JobStore
from ..schemas import (
    DeadLetterPage,
    DeadLetterResend,
    DeadLetterResendReport,
    DeadLetterView,
    JobAccepted,
    JobDetail,
    JobStatus,
    JobSummary,
    QueueView,
    SkippedDeadLetter,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(at: datetime | None) -> datetime | None:
    """A time given without a zone is UTC, as the database reads it; one that has no UTC
    (year 1 east of Greenwich, year 9999 west of it) is refused."""
    if at is None:
        return None
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidRequest(f"{at.isoformat()} is out of the range of times") from exc


class JobQueries:
    def __init__(self, jobs: JobStore, clock: Callable[[], datetime] = _now) -> None:
        self.jobs = jobs
        self.clock = clock

    async def project(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Mail events, in the order read, onto the jobs' status records."""
        await self.jobs.update_job_statuses([status_update(event) for event in events])

    async def status_for(self, device: Device, job_id: str) -> JobStatus:
        """A job of the device's tenant, by the id the device chose, or else by its delivery
        id (ids fleetmail chose, SMTP jobs, jobs queued before ids were scoped by tenant);
        another tenant's job does not exist for it."""
        document = await self.jobs.job(scoped_job_id(device.tenant_id, job_id))
        if document is None:
            document = await self.jobs.job(job_id)
        if document is None or document["tenant_id"] != device.tenant_id:
            raise JobNotFound(f"no job {job_id!r} for this device's tenant")
        return JobStatus.of(document)

    async def search(
        self,
        tenant_id: str,
        status: str | None,
        device_id: str | None,
        function: JobFunction | None,
        before: datetime | None,
        limit: int,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[JobStatus]:
        """The tenant's jobs submitted in [`since`, `until`), newest first; the last one's
        `submitted_at` as `before` pages back."""
        before, since, until = (_utc(at) for at in (before, since, until))
        if until is not None and (before is None or until < before):
            before = until
        found = await self.jobs.search_jobs(
            tenant_id, status, device_id, function.value if function else None, before, limit, since=since
        )
        return [JobStatus.of(d) for d in found]

    async def detail(self, tenant_id: str, delivery_id: str) -> JobDetail:
        """One of the tenant's jobs, by its delivery id, with its timeline: received, then
        each mail event (the server's replies, the attempts), then any resend."""
        document = await self.jobs.job(delivery_id)
        if document is None or document["tenant_id"] != tenant_id:
            raise JobNotFound(f"no job {delivery_id!r} in {tenant_id!r}")
        received = {"kind": "received", "at": document["submitted_at"]}
        return JobDetail.of({**document, "timeline": [received, *document.get("timeline", [])]})

    async def summary(self, tenant_id: str, hours: float) -> JobSummary:
        """How many of the tenant's jobs of the last `hours` are in each status."""
        since = self.clock() - timedelta(hours=hours)
        return JobSummary(since=since, counts=await self.jobs.job_counts(tenant_id, since))


def documents_of(letter: DeadLetter) -> list[tuple[str, str]]:
    """A dead job's documents: (file name, object name) each."""
    try:
        job = json.loads(base64.b64decode(letter.payload_b64))
    except (ValueError, TypeError):
        return []
    attachments = job.get("attachments") if isinstance(job, dict) else None
    return [
        (str(a.get("filename") or a["object_name"]), str(a["object_name"]))
        for a in attachments or []
        if isinstance(a, dict) and a.get("object_name")
    ]


BULK_PAGES = 8
BULK_PAGE = 500
"""A bulk resend reads at most 8 pages of the dead letters (each a bounded stretch of the
stream) per call; the caller follows `next` for older ones."""
SkipReason = Literal["documents_gone", "not_failed", "older_letter", "not_found"]


class DeadLetterDesk:
    def __init__(
        self,
        stream: DeadLetterStream,
        jobs: JobStore,
        attachments: Attachments,
        retention: timedelta,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.stream = stream
        self.jobs = jobs
        self.attachments = attachments
        self.retention = retention
        self.clock = clock

    async def page(self, tenant_id: str, before: int | None, limit: int) -> DeadLetterPage:
        """Jobs that failed for good or ran out of retries, newest first, with the reason."""
        try:
            return await self.stream.page(tenant_id, before, limit)
        except BusUnavailable as exc:
            raise EventBusUnavailable("try again", title="Dead letters unavailable") from exc

    async def resend(self, tenant_id: str, sequence: int) -> JobAccepted:
        """Send a dead job again (after fixing its cause); its status starts over at `queued`.
        A job whose documents are no longer kept is refused (`DocumentsGone`), and its dead
        letter stays."""
        try:
            letter = await self.stream.letter(tenant_id, sequence)
            if letter is not None:
                await self._check_documents(letter, sequence)
                job_id = await self.stream.resend(tenant_id, sequence)
        except BusUnavailable as exc:
            raise EventBusUnavailable("try again", title="Job queue unavailable") from exc
        if letter is None or job_id is None:
            raise DeadLetterNotFound(f"no dead job {sequence} in {tenant_id!r}")
        await self.jobs.requeue_job(job_id, self.clock())
        return JobAccepted(job_id=job_id, delivery_id=job_id, status="queued")

    async def resend_matching(self, tenant_id: str, wanted: DeadLetterResend) -> DeadLetterResendReport:
        """Send again, by the rule of `resend`, the tenant's dead letters that match, newest
        first: at most `wanted.limit` of them sent or skipped, from a bounded stretch of the
        stream. A job is sent again once: only while its status is `failed`, and from its
        newest dead letter."""
        resent: list[str] = []
        skipped: list[SkippedDeadLetter] = []
        seen: set[str] = set()

        def report(next_before: int | None) -> DeadLetterResendReport:
            return DeadLetterResendReport(
                resent=len(resent), job_ids=resent, skipped=skipped, next=next_before
            )

        before = wanted.before
        for _ in range(BULK_PAGES):
            page = await self.page(tenant_id, before, BULK_PAGE)
            for view in page.dead_letters:
                if len(resent) + len(skipped) >= wanted.limit:
                    return report(view.sequence + 1)
                if wanted.since is not None and view.failed_at < wanted.since:
                    return report(None)  # dead letters are kept in the order they failed
                if (wanted.until is not None and view.failed_at >= wanted.until) or (
                    wanted.reason is not None and view.reason_code != wanted.reason
                ):
                    continue
                why = await self._resend_one(tenant_id, view, seen)
                if why is None:
                    resent.append(str(view.job_id))
                else:
                    skipped.append(
                        SkippedDeadLetter(
                            sequence=view.sequence, job_id=view.job_id, why=why[0], detail=why[1]
                        )
                    )
            if (before := page.next) is None:
                return report(None)
        return report(before)

    async def _resend_one(
        self, tenant_id: str, view: DeadLetterView, seen: set[str]
    ) -> tuple[SkipReason, str] | None:
        """Why the dead letter is not sent again, or None once it is."""
        if view.job_id in seen:
            return "older_letter", "a newer dead letter of the same job was sent again"
        seen.add(str(view.job_id))
        status = await self.jobs.job(str(view.job_id)) if view.job_id else None
        if status is not None and status.get("status") != "failed":
            return "not_failed", f"the job is {status.get('status')} now: it was sent again already"
        try:
            await self.resend(tenant_id, view.sequence)
        except DocumentsGone as exc:
            return "documents_gone", exc.detail
        except DeadLetterNotFound as exc:
            return "not_found", exc.detail
        return None

    async def _check_documents(self, letter: DeadLetter, sequence: int) -> None:
        """A dead job's documents are kept for the retention after it failed, then deleted;
        a resend after a resend that was sent finds them deleted too."""
        documents = documents_of(letter)
        if not documents:
            return
        days = self.retention.total_seconds() / 86400
        if self.clock() >= letter.failed_at + self.retention:
            names = ", ".join(filename for filename, _ in documents)
            raise DocumentsGone(
                f"the documents of dead job {sequence} ({names}) are deleted {days:g} days after it "
                "failed: submit the job again from the device"
            )
        missing = [filename for filename, name in documents if not await self.attachments.exists(name)]
        if missing:
            raise DocumentsGone(
                f"{', '.join(missing)} of dead job {sequence} is no longer stored (it was sent by an "
                "earlier resend, or was deleted): submit the job again from the device"
            )


class Queues:
    def __init__(self, lag: ConsumerLag) -> None:
        self.lag = lag

    async def views(self, admin: Administrator) -> list[QueueView]:
        """Each durable consumer's lag: messages waiting, delivered but unacknowledged,
        redelivered. The queues are every tenant's: a key limited to some tenants sees none."""
        if not sees_the_whole_fleet(admin):
            return []
        try:
            return await self.lag.views()
        except BusUnavailable as exc:
            raise EventBusUnavailable("try again", title="Queues unavailable") from exc
