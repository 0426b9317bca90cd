"""The attachment store: the documents jobs refer to, in the JetStream Object Store.

Deleting an object here removes it whole: its chunks, then its meta message (nats-py's own
delete leaves a tombstone behind for every object, which would add up in a store whose every
object is deleted). Chunks go first: a deletion cut short leaves a meta message the sweep
still lists. Chunks no meta message names (an upload cut short: nats-py writes the meta
message last) are listed too, so the sweep can purge them.

The listings read the store in bulk — one ordered consumer each, pushed to this replica, its
chunks' payloads left out — not one request per object.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from io import BufferedIOBase

from faststream.nats import NatsBroker
from fleetmail_contracts.jobs import AttachmentRef
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_runtime.bus import BusUnavailable, bus_errors
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy
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
            async for msg in last_per_subject(self.broker, self.stream, f"$O.{self.bucket}.M.>"):
                try:
                    info = json.loads(msg.data or b"")
                    name, nuid = str(info["name"]), str(info.get("nuid") or "")
                except (ValueError, KeyError, TypeError):
                    continue
                stored = StoredObject(name, msg.metadata.timestamp, int(info.get("size") or 0))
                found.append((stored, nuid, bool(info.get("deleted"))))
        return found

    async def chunks(self) -> dict[str, datetime]:
        """Every chunk set in the store: its id (`nuid`) and when its last chunk was written
        (one with no meta message: an upload cut short, or one in progress)."""
        prefix = f"$O.{self.bucket}.C."
        found = {}
        with bus_errors(f"the {self.bucket} object store cannot be listed"):
            async for msg in last_per_subject(self.broker, self.stream, f"{prefix}>", headers_only=True):
                found[msg.subject.removeprefix(prefix)] = msg.metadata.timestamp
        return found

    async def purge_chunks(self, nuid: str) -> None:
        with bus_errors(f"chunks {nuid} could not be removed"):
            await self.broker.connection.jetstream().purge_stream(
                self.stream, subject=f"$O.{self.bucket}.C.{nuid}"
            )

    async def subjects(self) -> int:
        """How many subjects the store's stream holds: a meta message for each object (and
        tombstone), a chunk set for each object that has content, and chunk sets no meta
        message names."""
        # nats-py's StreamState leaves `num_subjects` out: the API's answer, read as it is.
        with bus_errors(f"the {self.bucket} object store cannot be read"):
            reply = await self.broker.connection.request(
                f"$JS.API.STREAM.INFO.{self.stream}", b"", timeout=10
            )
        try:
            return int(json.loads(reply.data)["state"].get("num_subjects") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            return 1 << 62  # unreadable: list the chunks rather than miss strays

    async def used_bytes(self) -> int:
        """What the store takes in JetStream (chunks and meta messages): what its limit counts."""
        with bus_errors(f"the {self.bucket} object store's size cannot be read"):
            info = await self.broker.connection.jetstream().stream_info(self.stream)
        return int(info.state.bytes or 0)


async def last_per_subject(
    broker: NatsBroker, stream: str, subject: str, *, headers_only: bool = False, timeout_s: float = 10
) -> AsyncIterator[Msg]:
    """The last message of each subject of `stream` matching `subject`, through an ordered
    consumer read to its end (JetStream pushes them with flow control: no request per message)."""
    js = broker.connection.jetstream()
    try:
        await js.get_last_msg(stream, subject)
    except NotFoundError:
        return  # nothing on those subjects: no consumer needed
    subscription = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        headers_only=headers_only or None,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    try:
        while True:
            msg = await subscription.next_msg(timeout=timeout_s)
            yield msg
            if not msg.metadata.num_pending:
                return
    finally:
        await subscription.unsubscribe()


async def batched_messages(
    broker: NatsBroker, stream: str, subject: str, *, batch: int = 500, timeout_s: float = 10
) -> AsyncGenerator[Msg]:
    """Every message of `stream` on `subject` (wildcards allowed), oldest first, `batch` at a
    time per request (JetStream's batched direct get; the stream allows direct gets) — no
    consumer: the jobs stream is a work queue, where a second consumer would take jobs away
    from mail-service's. Use it in `contextlib.aclosing` when leaving early."""
    connection = broker.connection
    inbox = connection.new_inbox()
    subscription = await connection.subscribe(inbox)
    request = {"seq": 1, "batch": batch, "next_by_subj": subject}
    try:
        while True:
            await connection.publish(
                f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox
            )
            while True:
                msg = await subscription.next_msg(timeout=timeout_s)
                headers = msg.headers or {}
                status = headers.get("Status")
                if status == "404":
                    return  # nothing (more) on those subjects
                if status == "204":  # the end of this batch
                    break
                if status:
                    raise NatsError(f"direct get from {stream}: {status} {headers.get('Description', '')}")
                request["seq"] = int(headers["Nats-Sequence"]) + 1
                yield msg
            if headers.get("Nats-Num-Pending", "0") == "0":
                return
    finally:
        await subscription.unsubscribe()
