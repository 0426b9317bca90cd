"""The attachment store: the documents jobs refer to, in the JetStream Object Store."""

from __future__ import annotations

from io import BufferedIOBase

from faststream.nats import NatsBroker
from fleetmail_contracts.jobs import AttachmentRef
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_runtime.bus import BusUnavailable, bus_errors
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from ..errors import AttachmentsUnavailable, InvalidJob


class ObjectStoreAttachments:
    def __init__(self, broker: NatsBroker, bucket: str = ATTACHMENTS_BUCKET) -> None:
        self.broker = broker
        self.bucket = bucket
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
