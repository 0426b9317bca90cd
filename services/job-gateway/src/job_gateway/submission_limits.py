"""How much one submission may weigh, and how much of one tenant's may be in flight at once.

A submission is refused as soon as it passes a limit, not once it has been taken in whole:
`limited` counts an HTTP body as it streams in, so a body over the limit is refused after
at most one chunk more than the limit has arrived (nothing beyond is read, spooled or
stored).

`BytesInFlight` is each tenant's share of this gateway: the bytes of the tenant's
submissions it is receiving and storing at once. A submission holds its bytes (`Hold`)
from the moment its body starts to be read — an HTTP body's declared `Content-Length` at
once, or what has arrived so far — until it is accepted or refused; one that would take the
tenant past its share is refused at once (`TooManyBytesInFlight`, try again shortly), and
other tenants are not affected. Jobs already queued are not counted: they are JetStream's,
bounded by its own limits. The count is per gateway process (each replica has its own).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

from starlette.datastructures import UploadFile

from .errors import SubmissionTooLarge, TooManyAttachments, TooManyBytesInFlight

RETRY_AFTER_S = 5
"""A submission in flight is taken in within seconds: the time to wait before trying again."""


class BytesInFlight:
    """Bytes each tenant's submissions hold on this gateway, within `limit` per tenant."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, tenant_id: str) -> int:
        return self._held.get(tenant_id, 0)

    @contextmanager
    def hold(self, tenant_id: str) -> Iterator[Hold]:
        """`with in_flight.hold(tenant) as hold: hold.grow_to(n) …`: released on leaving."""
        hold = Hold(self, tenant_id)
        try:
            yield hold
        finally:
            hold.release()

    def _take(self, tenant_id: str, size: int) -> None:
        held = self.held(tenant_id)
        if held + size > self.limit:
            raise TooManyBytesInFlight(
                f"this tenant's submissions in progress on this gateway would pass {self.limit} bytes; "
                f"try again in {RETRY_AFTER_S} s"
            )
        self._held[tenant_id] = held + size

    def _give_back(self, tenant_id: str, size: int) -> None:
        left = self.held(tenant_id) - size
        if left > 0:
            self._held[tenant_id] = left
        else:
            self._held.pop(tenant_id, None)


class Hold:
    """The bytes one submission holds of its tenant's share."""

    def __init__(self, in_flight: BytesInFlight, tenant_id: str) -> None:
        self.in_flight = in_flight
        self.tenant_id = tenant_id
        self.size = 0

    def grow_to(self, size: int) -> None:
        """Hold `size` bytes in all (a hold never shrinks before it is released), or raise
        `TooManyBytesInFlight` holding what it held."""
        if size > self.size:
            self.in_flight._take(self.tenant_id, size - self.size)
            self.size = size

    def release(self) -> None:
        self.in_flight._give_back(self.tenant_id, self.size)
        self.size = 0


def too_large(limit: int) -> SubmissionTooLarge:
    return SubmissionTooLarge(f"a submission may carry at most {limit} bytes")


def check_declared(size: int | None, limit: int, hold: Hold) -> None:
    """A body's declared size: over the limit, refused before a byte of it is read; else held."""
    if size is not None:
        if size > limit:
            raise too_large(limit)
        hold.grow_to(size)


async def limited(chunks: AsyncIterator[bytes], limit: int, hold: Hold) -> AsyncGenerator[bytes, None]:
    """The chunks of a body, counted as they arrive and held; `SubmissionTooLarge` as soon as
    they pass `limit` (the chunk that passes it is not passed on)."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        hold.grow_to(received)
        yield chunk


def check_attachment_count(count: int, limit: int) -> None:
    if count > limit:
        raise TooManyAttachments(f"a job may carry at most {limit} attachments, not {count}")


def size_of(upload: UploadFile) -> int:
    """An upload's size in bytes, measured on its file when the upload does not know it."""
    if upload.size is not None:
        return upload.size
    file = upload.file
    position = file.tell()
    size = file.seek(0, os.SEEK_END)
    file.seek(position)
    return size


def check_submission_size(uploads: Sequence[UploadFile], limit: int) -> int:
    """The uploads' total size, or `SubmissionTooLarge` when it passes `limit`."""
    total = sum(size_of(upload) for upload in uploads)
    if total > limit:
        raise too_large(limit)
    return total
