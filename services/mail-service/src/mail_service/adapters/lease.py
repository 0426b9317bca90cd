"""A lease among the service's replicas, in a KV bucket: whoever holds it does a periodic job
alone (the attachment sweep), and another replica takes over once it ran out.

The record names its holder and when it runs out; it is taken or renewed by a write at the
revision read (compare-and-set), so of two replicas asking at once one gets it. The holder
renews it at each turn, well before it runs out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from faststream.nats import NatsBroker
from fleetmail_runtime.bus import DeclaredBucket, bus_errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError


class KvLease(DeclaredBucket):
    """`key` must be one the bucket's other users never write (a dotted name beside hex ids)."""

    def __init__(
        self,
        broker: NatsBroker,
        bucket: str,
        key: str,
        owner: str,
        ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(broker, bucket)
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.clock = clock

    async def take(self) -> bool:
        """Whether this replica holds the lease now (taken, or renewed)."""
        now = self.clock()
        record = json.dumps({"owner": self.owner, "until": (now + self.ttl).isoformat()}).encode()
        kv = self.kv
        with bus_errors(f"the lease {self.key} cannot be read or written"):
            try:
                entry = await kv.get(self.key)
            except KeyNotFoundError:  # never taken, or removed
                entry = None
            try:
                if entry is None or not entry.value:
                    await kv.create(self.key, record)
                    return True
                held = json.loads(entry.value)
                if held.get("owner") != self.owner and now < datetime.fromisoformat(held["until"]):
                    return False
                await kv.update(self.key, record, last=entry.revision)
            except KeyWrongLastSequenceError:
                return False  # another replica wrote it first
        return True
