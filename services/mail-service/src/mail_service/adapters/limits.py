"""Each sending mailbox's limits in a JetStream KV bucket, changed by compare-and-set so every
replica takes its turns from the same state (`domain.limits` decides; this only stores)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from faststream.nats import NatsBroker
from fleetmail_contracts.streams import MAILBOX_LIMITS_BUCKET
from fleetmail_runtime.bus import BusUnavailable, DeclaredBucket, bus_errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ..domain.limits import MailboxState

T = TypeVar("T")
CONFLICTS = 50
"""Compare-and-set attempts before giving up: far more than replicas contending for one key."""


class KvMailboxLimits(DeclaredBucket):
    def __init__(self, broker: NatsBroker, bucket: str = MAILBOX_LIMITS_BUCKET) -> None:
        super().__init__(broker, bucket)

    async def change(self, key: str, change: Callable[[MailboxState], T]) -> T:
        """Apply `change` to the mailbox's state and store it (when it changed it), again on a
        concurrent write."""
        conflict: KeyWrongLastSequenceError | None = None
        with bus_errors("the mailbox limits bucket cannot be used"):
            for _ in range(CONFLICTS):
                try:
                    entry = await self.kv.get(key)
                    raw, revision = entry.value, entry.revision
                except KeyNotFoundError:
                    raw, revision = None, None
                state = MailboxState.from_json(raw)
                result = change(state)
                if raw is not None and state == MailboxState.from_json(raw):
                    return result  # nothing changed (a refused place): nothing to write
                try:
                    if revision is None:
                        await self.kv.create(key, state.to_json())
                    else:
                        await self.kv.update(key, state.to_json(), last=revision)
                except KeyWrongLastSequenceError as exc:
                    conflict = exc
                    continue  # another replica changed it first: decide again on its state
                return result
        assert conflict is not None
        raise BusUnavailable(f"the limits of mailbox {key} kept changing ({CONFLICTS} attempts)", conflict)
