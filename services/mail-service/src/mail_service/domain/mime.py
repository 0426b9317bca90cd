"""A MIME writer that streams: the message is produced as chunks of CRLF lines.

The standard library's `email` package builds the whole message in memory (a 25 MB scan
becomes three or four copies) and spends most of mail-service's CPU parsing the headers it
was just given. fleetmail's messages have one fixed shape — a text part (with an HTML alternative where
the function has one) and attachments —
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
from functools import cached_property
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
    size: int = 0
    """Its size in bytes, before encoding."""


def encoded_size(raw: int) -> int:
    """Bytes of base64 lines (76 characters and CRLF) for `raw` bytes of input."""
    characters = 4 * -(-raw // 3)
    return characters + 2 * -(-characters // LINE)


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


def _text_part(subtype: str, text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    ).encode() + base64_lines(body)


@dataclass(frozen=True)
class MimeMessage:
    headers: tuple[tuple[str, str], ...]
    text: str
    attachments: tuple[AttachmentSource, ...]
    boundary: str
    html: str | None = None
    """An HTML alternative of the text, where the function has one."""

    def head(self) -> bytes:
        return self._head

    @cached_property
    def _head(self) -> bytes:
        lines = b"".join(fold(name, value) for name, value in self.headers)
        lines += b"MIME-Version: 1.0\r\n"
        lines += f'Content-Type: multipart/mixed; boundary="{self.boundary}"\r\n\r\n'.encode()
        lines += b"This is a multi-part message in MIME format.\r\n"
        lines += f"--{self.boundary}\r\n".encode()
        if self.html is None:
            return lines + _text_part("plain", self.text)
        inner = f"{self.boundary}_alt"
        return (
            lines
            + f'Content-Type: multipart/alternative; boundary="{inner}"\r\n\r\n'.encode()
            + f"--{inner}\r\n".encode()
            + _text_part("plain", self.text)
            + f"--{inner}\r\n".encode()
            + _text_part("html", self.html)
            + f"--{inner}--\r\n".encode()
        )

    def size(self) -> int:
        """The size of the whole message as sent, computed without producing it."""
        total = len(self.head()) + len(f"--{self.boundary}--\r\n")
        for attachment in self.attachments:
            total += len(self._attachment_head(attachment)) + encoded_size(attachment.size)
        return total

    def _attachment_head(self, attachment: AttachmentSource) -> bytes:
        return (
            f"--{self.boundary}\r\n"
            f"Content-Type: {attachment.content_type}\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; {filename_parameter(attachment.filename)}\r\n\r\n"
        ).encode()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.head()
        for attachment in self.attachments:
            yield self._attachment_head(attachment)
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
