"""A MIME writer that streams: the message is produced as chunks of CRLF lines.

The standard library's `email` package builds the whole message in memory (a 25 MB scan
becomes three or four copies) and spends most of mail-service's CPU parsing the headers it
was just given. fleetmail's messages have one fixed shape — a text part and attachments —
so it writes them itself: every line ends in CRLF, text and attachments are base64 (no line
can begin with a dot, so no dot-stuffing is needed), and attachments are encoded from their
source a chunk at a time.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime
from urllib.parse import quote

LINE = 76
RAW_PER_LINE = LINE // 4 * 3  # 57 bytes of input per base64 line
CHUNK_LINES = 1024  # about 78 KB of output per chunk


@dataclass(frozen=True)
class AttachmentSource:
    filename: str
    content_type: str
    open: Callable[[], AsyncIterator[bytes]]
    """Yields the attachment's raw bytes, in chunks of any size."""


def encode_header(value: str) -> str:
    """RFC 2047 only when needed; ASCII stays readable."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=LINE).encode()


def fold(name: str, value: str) -> bytes:
    """A header line folded at commas or spaces to stay under 78 characters where possible."""
    line, lines = f"{name}: ", []
    for word in value.split(" "):
        if len(line) + len(word) > 76 and line.strip() not in (f"{name}:", ""):
            lines.append(line.rstrip())
            line = " "
        line += word + " "
    lines.append(line.rstrip())
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + LINE] + b"\r\n" for i in range(0, len(encoded), LINE))


def filename_parameter(filename: str) -> str:
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        return f'filename="{filename}"'
    return f"filename*=utf-8''{quote(filename, safe='')}"


@dataclass(frozen=True)
class MimeMessage:
    headers: tuple[tuple[str, str], ...]
    text: str
    attachments: tuple[AttachmentSource, ...]
    boundary: str

    def head(self) -> bytes:
        lines = b"".join(fold(name, value) for name, value in self.headers)
        lines += b"MIME-Version: 1.0\r\n"
        lines += f'Content-Type: multipart/mixed; boundary="{self.boundary}"\r\n\r\n'.encode()
        lines += b"This is a multi-part message in MIME format.\r\n"
        text = self.text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        lines += (
            f"--{self.boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        return lines + base64_lines(text)

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.head()
        for attachment in self.attachments:
            yield (
                f"--{self.boundary}\r\n"
                f"Content-Type: {attachment.content_type}\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                f"Content-Disposition: attachment; {filename_parameter(attachment.filename)}\r\n\r\n"
            ).encode()
            pending = b""
            async for raw in attachment.open():
                pending += raw
                whole = len(pending) - len(pending) % (RAW_PER_LINE * CHUNK_LINES)
                if whole:
                    yield base64_lines(pending[:whole])
                    pending = pending[whole:]
            if pending:
                yield base64_lines(pending)
        yield f"--{self.boundary}--\r\n".encode()

    async def to_bytes(self) -> bytes:
        """The whole message at once (tests and small messages)."""
        return b"".join([chunk async for chunk in self.chunks()])


def new_boundary() -> str:
    return f"=_fleetmail_{secrets.token_hex(12)}"


def date_header(now: datetime) -> str:
    return format_datetime(now)


def in_memory(data: bytes) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return chunks
