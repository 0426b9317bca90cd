"""The attachment store: the documents jobs refer to, in the JetStream Object Store.

Deleting an object here removes it whole: its chunks, then its meta message (nats-py's own
delete leaves a tombstone behind for every object, which would add up in a store whose every
object is deleted). Chunks go first: a deletion cut short leaves a meta message the sweep
still lists, never chunks nothing names.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from io import BufferedIOBase

from faststream.nats import NatsBroker
from fleetmail_contracts.jobs import AttachmentRef
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_runtime.bus import BusUnavailable, bus_errors
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from ..domain.retention import StoredObject
from ..errors import AttachmentsUnavailable, InvalidJob


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


class ObjectStoreAttachments:
    def __init__(self, broker: NatsBroker, bucket: str = ATTACHMENTS_BUCKET) -> None:
        self.broker = broker
        self.bucket = bucket
        self.stream = f"OBJ_{bucket}"
        self._store: ObjectStore | None = None

    async def open(self) -> None:
        """A start hook: the store, which the runtime declared with the streams, looked up once."""
        with bus_errors(f"the {self.bucket} object store cannot be opened"):
            self._store = await self.broker.object_storage(self.bucket, declare=False)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            raise RuntimeError("ObjectStoreAttachments.open() was not awaited (it is a start hook)")
        return self._store

    async def fetch(self, attachment: AttachmentRef, into: BufferedIOBase) -> None:
        try:
            with bus_errors(f"the {self.bucket} object store cannot be read"):
                try:
                    await self.store.get(attachment.object_name, writeinto=into)
                except NotFoundError as exc:
                    raise InvalidJob(
                        f"attachment {attachment.filename} is no longer stored",
                        FailureReason.ATTACHMENT_MISSING,
                    ) from exc
        except BusUnavailable as exc:
            raise AttachmentsUnavailable(str(exc)) from exc

    async def discard(self, attachments: Sequence[AttachmentRef]) -> None:
        try:
            await asyncio.gather(*(self.erase(ref.object_name) for ref in attachments))
        except BusUnavailable as exc:
            raise AttachmentsUnavailable(str(exc)) from exc

    async def erase(self, name: str, nuid: str | None = None) -> None:
        """Remove an object whole (its chunks, then its meta message); gone already is fine."""
        js = self.broker.connection.jetstream()
        with bus_errors(f"attachment {name} could not be removed"):
            if nuid is None:
                try:
                    nuid = (await self.store.get_info(name, show_deleted=True)).nuid
                except NotFoundError:
                    return
            if nuid:
                await js.purge_stream(self.stream, subject=f"$O.{self.bucket}.C.{nuid}")
            await js.purge_stream(self.stream, subject=_meta_subject(self.bucket, name))

    async def stored(self) -> list[tuple[StoredObject, str, bool]]:
        """Every object's meta message: the object, its chunks' id, and whether it is a
        tombstone (deleted, its meta message left behind)."""
        found = []
        with bus_errors(f"the {self.bucket} object store cannot be listed"):
            async for msg in stream_messages(self.broker, self.stream, f"$O.{self.bucket}.M.>"):
                try:
                    info = json.loads(msg.data or b"")
                    name, nuid = str(info["name"]), str(info.get("nuid") or "")
                except (ValueError, KeyError, TypeError):
                    continue
                if msg.time is None:
                    continue
                stored = StoredObject(name, msg.time, int(info.get("size") or 0))
                found.append((stored, nuid, bool(info.get("deleted"))))
        return found

    async def used_bytes(self) -> int:
        """What the store takes in JetStream (chunks and meta messages): what its limit counts."""
        with bus_errors(f"the {self.bucket} object store's size cannot be read"):
            info = await self.broker.connection.jetstream().stream_info(self.stream)
        return int(info.state.bytes or 0)


async def stream_messages(broker: NatsBroker, stream: str, subject: str) -> AsyncIterator[RawStreamMsg]:
    """Every message of `stream` on `subject` (wildcards allowed), oldest first, read one at a
    time by sequence — no consumer: the jobs stream is a work queue, where a second consumer
    would take jobs away from mail-service's."""
    js = broker.connection.jetstream()
    sequence = 1
    while True:
        try:
            msg = await js.get_msg(stream, sequence, subject=subject, next=True)
        except NotFoundError:
            return
        yield msg
        sequence = int(msg.seq or sequence) + 1
