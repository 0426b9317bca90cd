"""The delivery ledger: a JetStream KV bucket of the jobs the SMTP server accepted.

A job is recorded the moment its message is accepted, before the job is acknowledged; a
redelivery (the replica died, the ack was lost) finds it there and is not sent again. Records
expire with the bucket's TTL, long after JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from faststream.nats import NatsBroker
from fleetmail_contracts.streams import DELIVERY_LEDGER_BUCKET
from fleetmail_runtime.bus import BusUnavailable, DeclaredBucket, bus_errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

log = logging.getLogger(__name__)


class KvDeliveryLedger(DeclaredBucket):
    def __init__(
        self,
        broker: NatsBroker,
        write_timeout_s: float,
        *,
        bucket: str = DELIVERY_LEDGER_BUCKET,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(broker, bucket)
        self.write_timeout_s = write_timeout_s
        self.sleep = sleep
        self.monotonic = monotonic

    async def already_delivered(self, job_id: str) -> bool:
        # Inside `bus_errors`: a missing key is an answer, not an outage.
        with bus_errors("the delivery ledger cannot be read"):
            try:
                await self.kv.get(job_id)
            except KeyNotFoundError:
                return False
        return True

    async def record(self, job_id: str, message_id: str) -> None:
        """The SMTP server has the message: record it, retrying through a bus outage (a NATS node
        dying, a leader election) — a record lost here means the job is sent again."""
        deadline = self.monotonic() + self.write_timeout_s
        while True:
            try:
                with bus_errors("the delivery ledger cannot be written"):
                    try:
                        await self.kv.create(job_id, message_id.encode())
                    except KeyWrongLastSequenceError:
                        # Already there: another delivery, or this write's own answer lost
                        # on the way back.
                        log.info("job %s was already in the delivery ledger", job_id)
                return
            except BusUnavailable as exc:
                if self.monotonic() > deadline:
                    raise
                log.warning("job %s: recording its delivery failed (%s); trying again", job_id, exc)
                await self.sleep(0.2)
