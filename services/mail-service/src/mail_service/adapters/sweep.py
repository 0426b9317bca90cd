"""The attachment sweep: every so often, what nothing holds any more leaves the Object Store
(`domain.retention` decides), and the store's use is checked against its alert threshold.

One replica sweeps at a time (it holds the sweep's lease). The store's meta messages are
listed in bulk, and only objects past the grace are *candidates*. What may
hold a candidate is asked for candidates alone, cheapest first, and each step runs only
while some candidate is still unaccounted for: the parked jobs (by key: an object's name
starts with its job's delivery id, job-gateway's intake names them so), the jobs stream
(queued, waiting for a retry, or being delivered: a work queue keeps a job until it is
acknowledged; read in batches until every candidate is found), then the dead letters. Chunk sets no
meta message names (an upload cut short) are purged once past the grace, at the second sweep
that finds them so; the chunk sets are listed only when the stream holds more subjects than
the meta messages account for. Objects stored after the listing wait for the next sweep.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_runtime.bus import BusUnavailable, bus_errors
from pydantic import ValidationError

from ..domain.retention import Holds, StoredObject, delivery_of, names_in_json, over_threshold, plan_sweep
from ..telemetry import ATTACHMENTS_SWEPT
from .attachments import ObjectStoreAttachments, batched_messages
from .lease import KvLease
from .parking import KvParkingLot

log = logging.getLogger(__name__)


class AttachmentSweep:
    def __init__(
        self,
        broker: NatsBroker,
        attachments: ObjectStoreAttachments,
        parking: KvParkingLot,
        lease: KvLease,
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
        self.lease = lease
        self.clock = clock
        self.grace = grace
        self.retention = retention
        self.max_bytes = max_bytes
        self.alert_percent = alert_percent
        self.suspects: frozenset[str] = frozenset()
        self.stray_suspects: frozenset[str] = frozenset()
        self.alarmed = False

    async def sweep(self) -> None:
        if not await self.lease.take():
            self.suspects = self.stray_suspects = frozenset()  # another replica sweeps
            return
        listed = await self.attachments.stored()
        tombstones = [(stored, nuid) for stored, nuid, deleted in listed if deleted]
        now = self.clock()
        objects = {
            stored.name: (stored, nuid)
            for stored, nuid, deleted in listed
            if not deleted and now - stored.stored_at >= self.grace
        }
        holds = await self.holds(objects.keys()) if objects else Holds()
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
        await self.purge_strays(listed, now)
        if plan.remove:
            ATTACHMENTS_SWEPT.add(len(plan.remove))
            log.info("the attachment sweep removed %d objects no job holds", len(plan.remove))
        await self.check_use()

    async def purge_strays(self, listed: list[tuple[StoredObject, str, bool]], now: datetime) -> None:
        """Chunk sets no meta message names, past the grace at two sweeps in a row, go. An
        upload completing meanwhile is no stray: its last chunk is as fresh as its meta message."""
        with_chunks = sum(1 for stored, nuid, deleted in listed if nuid and stored.size and not deleted)
        if await self.attachments.subjects() <= len(listed) + with_chunks and not self.stray_suspects:
            return  # every chunk set has its meta message: nothing to list
        chunks = await self.attachments.chunks()
        named = {nuid for _, nuid, _ in listed}
        strays = frozenset(n for n, at in chunks.items() if n not in named and now - at >= self.grace)
        purge = strays & self.stray_suspects
        self.stray_suspects = strays - purge
        for nuid in sorted(purge):
            await self.attachments.purge_chunks(nuid)
        if purge:
            log.info("the attachment sweep removed %d uploads cut short", len(purge))

    async def holds(self, candidates: Collection[str]) -> Holds:
        parked = await self.parking.parked_ids()
        live = {name for name in candidates if delivery_of(name) in parked}
        unknown = set(candidates) - live
        if unknown:
            jobs = batched_messages(self.broker, streams.JOBS_STREAM, streams.JOBS_SUBJECTS[0])
            with bus_errors("the queued jobs cannot be read"):
                async with contextlib.aclosing(jobs):
                    async for msg in jobs:
                        found = unknown.intersection(names_in_json(msg.data or b""))
                        live |= found
                        unknown -= found
                        if not unknown:
                            break
        dead_since: dict[str, datetime] = {}
        if unknown:
            with bus_errors("the dead letters cannot be read"):
                dead_since = await self.dead_since(unknown)
        return Holds(frozenset(live), dead_since)

    async def dead_since(self, names: set[str]) -> dict[str, datetime]:
        """Each of `names` a dead letter holds: its most recent dead letter's failure time."""
        dead_since: dict[str, datetime] = {}
        async for msg in batched_messages(self.broker, streams.DLQ_STREAM, streams.DLQ_SUBJECTS[0]):
            try:
                letter = DeadLetter.model_validate_json(msg.data or b"")
                payload = base64.b64decode(letter.payload_b64)
            except (ValidationError, ValueError):
                continue
            for name in names.intersection(names_in_json(payload)):
                dead_since[name] = max(letter.failed_at, dead_since.get(name, letter.failed_at))
        return dead_since

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
