"""The attachment sweep: every so often, what nothing holds any more leaves the Object Store
(`domain.retention` decides), and the store's use is checked against its alert threshold.

What holds a document is read from where the jobs are: the jobs stream (queued, waiting for
a retry, or being delivered: a work queue keeps a job until it is acknowledged), the parked
jobs, and the dead letters. The objects are listed first, so an object stored after the
listing is not considered until the next sweep.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_runtime.bus import BusUnavailable
from pydantic import ValidationError

from ..domain.retention import Holds, names_in_json, over_threshold, plan_sweep
from ..telemetry import ATTACHMENTS_SWEPT
from .attachments import ObjectStoreAttachments, stream_messages
from .parking import KvParkingLot

log = logging.getLogger(__name__)


class AttachmentSweep:
    def __init__(
        self,
        broker: NatsBroker,
        attachments: ObjectStoreAttachments,
        parking: KvParkingLot,
        clock: Callable[[], datetime],
        *,
        grace: timedelta,
        retention: timedelta,
        max_bytes: int,
        alert_percent: float,
    ) -> None:
        self.broker = broker
        self.attachments = attachments
        self.parking = parking
        self.clock = clock
        self.grace = grace
        self.retention = retention
        self.max_bytes = max_bytes
        self.alert_percent = alert_percent
        self.suspects: frozenset[str] = frozenset()
        self.alarmed = False

    async def sweep(self) -> None:
        listed = await self.attachments.stored()
        tombstones = [(stored, nuid) for stored, nuid, deleted in listed if deleted]
        now = self.clock()
        # Only objects past the grace can go: the jobs and dead letters are read for them alone.
        objects = {
            stored.name: (stored, nuid)
            for stored, nuid, deleted in listed
            if not deleted and now - stored.stored_at >= self.grace
        }
        holds = await self.holds() if objects else Holds()
        plan = plan_sweep(
            [stored for stored, _ in objects.values()],
            holds,
            self.suspects,
            now=now,
            grace=self.grace,
            retention=self.retention,
        )
        self.suspects = plan.suspects
        for name in plan.remove:
            await self.attachments.erase(name, objects[name][1])
        for stored, nuid in tombstones:  # deleted already: nothing can read them
            await self.attachments.erase(stored.name, nuid)
        if plan.remove:
            ATTACHMENTS_SWEPT.add(len(plan.remove))
            log.info("the attachment sweep removed %d objects no job holds", len(plan.remove))
        await self.check_use()

    async def holds(self) -> Holds:
        live: set[str] = set()
        async for msg in stream_messages(self.broker, streams.JOBS_STREAM, streams.JOBS_SUBJECTS[0]):
            live.update(names_in_json(msg.data or b""))
        for job_json in await self.parking.parked_jobs():
            live.update(names_in_json(job_json))
        dead_since: dict[str, datetime] = {}
        async for msg in stream_messages(self.broker, streams.DLQ_STREAM, streams.DLQ_SUBJECTS[0]):
            try:
                letter = DeadLetter.model_validate_json(msg.data or b"")
                payload = base64.b64decode(letter.payload_b64)
            except (ValidationError, ValueError):
                continue
            for name in names_in_json(payload):
                dead_since[name] = max(letter.failed_at, dead_since.get(name, letter.failed_at))
        return Holds(frozenset(live), dead_since)

    async def check_use(self) -> None:
        """Say so once when the store passes its alert threshold, and once when it is back under."""
        try:
            used = await self.attachments.used_bytes()
        except BusUnavailable as exc:
            log.warning("the attachment store's use could not be read: %s", exc)
            return
        alarm = over_threshold(used, self.max_bytes, self.alert_percent)
        if alarm and not self.alarmed:
            log.error(
                "the attachment store holds %d of its %d bytes (over %g %%): uploads are refused "
                "once it is full; look for jobs stuck in the queue or many dead letters",
                used,
                self.max_bytes,
                self.alert_percent,
            )
        elif self.alarmed and not alarm:
            log.info("the attachment store is back under %g %% of its limit", self.alert_percent)
        self.alarmed = alarm
