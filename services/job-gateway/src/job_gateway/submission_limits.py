"""How much one submission may weigh, and how much of one tenant's may be in flight at once.

A submission is refused as soon as it passes a limit, not once it has been taken in whole:
`limited` counts an HTTP body as it streams in, so a body over the limit is refused after
at most one chunk more than the limit has arrived (nothing beyond is read, spooled or
stored). A declared `Content-Length` over the limit is refused before a byte is read; a
body that stops arriving (nothing for `body_read_timeout_s`) or is not whole after
`body_read_deadline_s` is refused (408), so that no body holds its bytes for ever.

`BytesInFlight` is each tenant's share of this gateway: the bytes of the tenant's
submissions it holds while receiving, parsing and storing them. A submission's `Hold`
counts what has actually arrived — never a size only declared — and grows as more does:
an HTTP body chunk by chunk, an SMTP message line by line as its DATA is spooled and then
by the decoded copies of its parts while it is parsed; the edge hands the same hold to
`JobIntake.submit`, so no byte is counted twice. One device may hold at most its own share
(`device_bytes_in_flight`) of its tenant's, so a single device cannot take the tenant's
whole share. A hold that would take the device or the tenant past its share is refused at
once (`TooManyBytesInFlight`, try again shortly: HTTP 507, SMTP 452 4.3.1) and other
tenants are not affected; a submission that alone would pass the device's share can never
be taken in (`SubmissionTooLarge`: 413, SMTP 552). A hold is released when its submission
is accepted or refused, when its connection breaks or times out; a released hold cannot
grow again (a parse still running after its connection went cannot take bytes back).
Jobs already queued are not counted: they are JetStream's, bounded by its own limits. The
count is per gateway process (each replica has its own).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

from starlette.datastructures import UploadFile

from .errors import BodyReadTimeout, SubmissionTooLarge, TooManyAttachments, TooManyBytesInFlight

RETRY_AFTER_S = 5
"""A submission in flight is taken in within seconds: the time to wait before trying again."""


class BytesInFlight:
    """Bytes each tenant's submissions hold on this gateway, within `limit` per tenant and
    `device_limit` per device. Holds grow from the event loop and from the thread that parses
    an SMTP message: the counts are changed under a lock."""

    def __init__(self, limit: int, device_limit: int | None = None) -> None:
        self.limit = limit
        self.device_limit = limit if device_limit is None else min(device_limit, limit)
        self._held: dict[tuple[str, str | None], int] = {}
        self._lock = threading.Lock()

    def held(self, tenant_id: str, device_id: str | None = None) -> int:
        return self._held.get(_key(tenant_id, device_id), 0)

    @contextmanager
    def hold(self, tenant_id: str, device_id: str) -> Iterator[Hold]:
        """`with in_flight.hold(tenant, device) as hold: hold.grow_to(n) …`: released on leaving."""
        hold = Hold(self, tenant_id, device_id)
        try:
            yield hold
        finally:
            hold.release()

    def _take(self, hold: Hold, size: int) -> None:
        """Take `size` more bytes for `hold`, or raise taking nothing. Under the lock."""
        if hold.released:
            raise TooManyBytesInFlight("the submission was given up before it was taken in")
        if hold.size + size > self.device_limit:
            raise SubmissionTooLarge(
                f"a submission may hold at most {self.device_limit} bytes on this gateway while it is "
                "taken in (the message with its decoded parts)"
            )
        tenant, device = _key(hold.tenant_id), _key(hold.tenant_id, hold.device_id)
        if self._held.get(device, 0) + size > self.device_limit:
            raise TooManyBytesInFlight(
                f"this device's submissions in progress on this gateway would pass {self.device_limit} "
                f"bytes; try again in {RETRY_AFTER_S} s"
            )
        if self._held.get(tenant, 0) + size > self.limit:
            raise TooManyBytesInFlight(
                f"this tenant's submissions in progress on this gateway would pass {self.limit} bytes; "
                f"try again in {RETRY_AFTER_S} s"
            )
        for key in (tenant, device):
            self._held[key] = self._held.get(key, 0) + size

    def _give_back(self, hold: Hold, size: int) -> None:
        """Under the lock."""
        for key in (_key(hold.tenant_id), _key(hold.tenant_id, hold.device_id)):
            left = self._held.get(key, 0) - size
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)


def _key(tenant_id: str, device_id: str | None = None) -> tuple[str, str | None]:
    """A tenant's count (`device_id` None) or one of its devices' (device ids are per tenant)."""
    return (tenant_id, device_id)


class Hold:
    """The bytes one submission holds of its device's and its tenant's share."""

    def __init__(self, in_flight: BytesInFlight, tenant_id: str, device_id: str) -> None:
        self.in_flight = in_flight
        self.tenant_id = tenant_id
        self.device_id = device_id
        self.size = 0
        self.released = False

    def grow_to(self, size: int) -> None:
        """Hold `size` bytes in all (a hold never shrinks before it is released), or raise
        holding what it held: `TooManyBytesInFlight` when the device's or the tenant's share
        is full, `SubmissionTooLarge` when `size` alone passes the device's share."""
        with self.in_flight._lock:
            if size > self.size:
                self.in_flight._take(self, size - self.size)
                self.size = size

    def release(self) -> None:
        with self.in_flight._lock:
            if not self.released:
                self.in_flight._give_back(self, self.size)
            self.released = True
            self.size = 0


def too_large(limit: int) -> SubmissionTooLarge:
    return SubmissionTooLarge(f"a submission may carry at most {limit} bytes")


def check_declared(size: int | None, limit: int) -> None:
    """A body's declared size over the limit is refused before a byte of it is read. Nothing
    is held for it: a declared size is a promise, only what arrives is held."""
    if size is not None and size > limit:
        raise too_large(limit)


async def limited(
    chunks: AsyncIterator[bytes], limit: int, hold: Hold, idle_timeout_s: float, deadline_s: float = math.inf
) -> AsyncGenerator[bytes, None]:
    """The chunks of a body, counted as they arrive and held; `SubmissionTooLarge` as soon as
    they pass `limit` (the chunk that passes it is not passed on), `BodyReadTimeout` when no
    chunk arrives for `idle_timeout_s` or the body is not whole after `deadline_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    received = 0
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout_at(min(loop.time() + idle_timeout_s, deadline)):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if loop.time() >= deadline:
                raise BodyReadTimeout(f"the body took more than {deadline_s:g} s to arrive") from None
            raise BodyReadTimeout(
                f"nothing of the body arrived for {idle_timeout_s:g} s; send it again"
            ) from None
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
