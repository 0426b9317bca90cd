"""Attachments in the JetStream Object Store, and the durable consumers' lag."""

from __future__ import annotations

import hashlib
from io import BufferedIOBase
from typing import cast

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.jobs import AttachmentRef
from fleetmail_runtime.bus import bus_errors
from nats.js.errors import NotFoundError
from starlette.datastructures import UploadFile

from ..errors import AttachmentTooLarge
from ..schemas import QueueView

CHUNK = 1024 * 1024


class ObjectStoreAttachments:
    """`ports.Attachments` in the attachments bucket; NATS errors are `BusUnavailable`."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

    async def put(self, object_name: str, upload: UploadFile, limit: int) -> AttachmentRef:
        """Stream one upload into the Object Store; it is never whole in memory."""
        digest = hashlib.sha256()
        size = 0
        while chunk := await upload.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if size > limit:
                raise AttachmentTooLarge(f"{upload.filename} is larger than {limit} bytes")
        await upload.seek(0)
        with bus_errors("the attachment could not be stored"):
            store = await self.broker.object_storage(streams.ATTACHMENTS_BUCKET)
            # The store reads the spooled upload in chunks; nats-py's annotation is narrower.
            await store.put(object_name, cast("BufferedIOBase", upload.file))
        return AttachmentRef(
            object_name=object_name,
            filename=(upload.filename or "attachment").replace("\r", "").replace("\n", "")[:255]
            or "attachment",
            content_type=upload.content_type or "application/octet-stream",
            size=size,
            sha256=digest.hexdigest(),
        )

    async def exists(self, object_name: str) -> bool:
        with bus_errors(f"attachment {object_name} could not be looked up"):
            store = await self.broker.object_storage(streams.ATTACHMENTS_BUCKET)
            try:
                await store.get_info(object_name)
            except NotFoundError:
                return False
        return True

    async def delete(self, object_name: str) -> None:
        with bus_errors(f"attachment {object_name} could not be removed"):
            store = await self.broker.object_storage(streams.ATTACHMENTS_BUCKET)
            await store.delete(object_name)


class JetStreamConsumerLag:
    """`ports.ConsumerLag`: each durable consumer's lag, read from JetStream."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker

    async def views(self) -> list[QueueView]:
        views = []
        with bus_errors("the queues could not be read"):
            js = self.broker.connection.jetstream()
            for stream, consumer in streams.DURABLE_CONSUMERS:
                try:
                    info = await js.consumer_info(stream, consumer)
                except NotFoundError:
                    continue  # its service has not started yet
                views.append(
                    QueueView(
                        stream=stream,
                        consumer=consumer,
                        pending=info.num_pending or 0,
                        unacknowledged=info.num_ack_pending or 0,
                        redelivered=info.num_redelivered or 0,
                    )
                )
        return views
