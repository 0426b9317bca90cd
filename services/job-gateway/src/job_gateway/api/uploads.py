"""A job's form (its `job` part and its `files`), read only once the device is known.

FastAPI would read a form parameter's body — spooling every file — before any dependency
runs, so before the device is authenticated and before any limit could apply. The
submission route reads it here instead, after authentication, within the device's `Hold`:
a declared `Content-Length` over the limit is refused before a byte is read (and nothing is
held for a size only declared), the body is counted and held as it streams into Starlette's
parser (`submission_limits.limited`) and refused when it stops arriving, and the file parts
are counted as their headers arrive, so neither too many files nor too many bytes are
spooled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from ..errors import InvalidJob, UnreadableRequest
from ..settings import GatewaySettings
from ..submission_limits import Hold, check_attachment_count, check_declared, limited

MAX_FIELDS = 16
"""Form fields other than files: the job part, and some slack for clients that add their own."""
MAX_FIELD_BYTES = 1024 * 1024
"""The `job` part (JSON: recipients, subject, a text body)."""


class _JobFormParser(MultiPartParser):
    """Starlette's parser, whose refusal of one file too many becomes `TooManyAttachments`
    (its own exception says which limit only in its message)."""

    def on_headers_finished(self) -> None:
        try:
            super().on_headers_finished()
        except MultiPartException:
            if self._current_files > self.max_files:
                check_attachment_count(self._current_files, int(self.max_files))
            raise


def _declared_size(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def _parse(request: Request, settings: GatewaySettings, hold: Hold) -> FormData:
    check_declared(_declared_size(request), settings.max_submission_bytes)
    body = limited(
        request.stream(),
        settings.max_submission_bytes,
        hold,
        settings.body_read_timeout_s,
        settings.body_read_deadline_s,
    )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "multipart/form-data":
            return await _JobFormParser(
                request.headers,
                body,
                max_files=settings.max_attachments,
                max_fields=MAX_FIELDS,
                max_part_size=MAX_FIELD_BYTES,
            ).parse()
        if content_type == "application/x-www-form-urlencoded":
            return await FormParser(
                request.headers, body, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES
            ).parse()
    except MultiPartException as exc:
        raise UnreadableRequest(exc.message) from None
    except ClientDisconnect:
        raise UnreadableRequest("the body ended before it was complete") from None
    raise InvalidJob("send the job as multipart/form-data (or a form without files)")


@asynccontextmanager
async def job_form(
    request: Request, settings: GatewaySettings, hold: Hold
) -> AsyncIterator[tuple[str, list[UploadFile]]]:
    """The `job` part and the files of a submission; the files are closed on leaving."""
    form = await _parse(request, settings, hold)
    try:
        job = form.get("job")
        files = form.getlist("files")
        if not isinstance(job, str):
            raise InvalidJob("the job part is missing (a form field named job, JSON)")
        uploads = [upload for upload in files if isinstance(upload, UploadFile)]
        if len(uploads) != len(files):
            raise InvalidJob("each files part must be a file (with a filename)")
        yield job, uploads
    finally:
        await form.close()
