"""A device's message read from its spooled file, one line at a time: the headers, the text
body, and every other part decoded into a spooled file of its own.

`email`'s parser holds the whole message and every decoded part in memory (a 25 MB scan
becomes some 100 MB of strings and bytes); here memory stays within one line and the spool
thresholds, whatever the message's size. The header blocks are still parsed by `email`
(they are small, and bounded here).

A part is carried through unchanged when it cannot be read as text: a text body in a
charset Python does not know, or whose bytes are not that charset, becomes an attachment
with its bytes as sent. A part that cannot be decoded at all (base64 that ends mid-byte) is
refused, naming the part.
"""

from __future__ import annotations

import binascii
import codecs
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from tempfile import SpooledTemporaryFile
from typing import IO, BinaryIO, cast

from starlette.datastructures import Headers, UploadFile

from .errors import InvalidJob

READ = 64 * 1024
HEADER_LIMIT = 64 * 1024
"""The most one header block may hold (a message's or a part's)."""
BODY_LIMIT = 1024 * 1024
"""A text body larger than this is carried as an attachment instead."""
MAX_PARTS = 100
"""The most parts one message may have (each is a file while the job is taken in)."""
BASE64 = bytes(range(256)).translate(
    None, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)
"""Every byte that is not base64 (dropped, as email's decoder does)."""
_parser = BytesParser(policy=email.policy.default)
HEADER_ERRORS = (ValueError, LookupError, IndexError, AttributeError, TypeError)
"""What email's header parser raises in its corners: the field is then taken as it came."""


class _Base64:
    def __init__(self) -> None:
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        data = self.rest + data.translate(None, BASE64)
        whole = len(data) // 4 * 4
        self.rest = data[whole:]
        return binascii.a2b_base64(data[:whole]) if whole else b""

    def finish(self) -> bytes:
        rest = self.rest.rstrip(b"=")
        if len(rest) % 4 == 1:
            raise ValueError("its base64 content ends in the middle of a byte")
        return binascii.a2b_base64(rest + b"=" * (-len(rest) % 4)) if rest else b""


class _QuotedPrintable:
    def __init__(self) -> None:
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        data = self.rest + data
        escape = data.rfind(b"=", max(len(data) - 2, 0))
        # "=" and its two digits, or a soft line break, may arrive in the next piece.
        whole = escape if escape >= 0 else len(data)
        self.rest = data[whole:]
        return binascii.a2b_qp(data[:whole])

    def finish(self) -> bytes:
        return binascii.a2b_qp(self.rest)


class _Unchanged:
    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


def _decoder(encoding: str) -> _Base64 | _QuotedPrintable | _Unchanged:
    if encoding == "base64":
        return _Base64()
    if encoding == "quoted-printable":
        return _QuotedPrintable()
    return _Unchanged()  # 7bit, 8bit, binary, and encodings nobody knows: the bytes as sent


def clean_text(text: str) -> str:
    """Header text without the undecodable bytes `email` keeps as surrogates (JSON has none)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def header_text(headers: EmailMessage, name: str) -> str:
    try:
        value = headers.get(name)
    except HEADER_ERRORS:
        raw = [v for k, v in headers.raw_items() if k.lower() == name.lower()]
        value = raw[0] if raw else None
    return clean_text(" ".join(str(value or "").split()))


@dataclass(frozen=True)
class _Shape:
    """What a part's header says about it, read once."""

    content_type: str
    disposition: str | None
    charset: str
    filename: str | None
    encoding: str
    boundary: str | None


def _shape(headers: EmailMessage) -> _Shape:
    name = headers.get_filename()
    boundary = headers.get_boundary() if headers.get_content_maintype() == "multipart" else None
    return _Shape(
        content_type=headers.get_content_type(),
        disposition=headers.get_content_disposition(),
        charset=str(headers.get_param("charset", "us-ascii") or "us-ascii"),
        filename=clean_text(name) if name else None,
        encoding=header_text(headers, "Content-Transfer-Encoding").lower(),
        boundary=boundary or None,
    )


@dataclass
class _Part:
    number: int
    shape: _Shape
    in_alternative: bool
    threshold: int
    written: Callable[[int], None]
    """Told the size of each piece of decoded content written."""
    file: SpooledTemporaryFile[bytes] = field(init=False)
    size: int = 0

    def __post_init__(self) -> None:
        self.decoder = _decoder(self.shape.encoding)
        self.file = SpooledTemporaryFile(max_size=self.threshold)

    @property
    def described(self) -> str:
        name = self.shape.filename
        return f"part {self.number}" + (f" ({name})" if name else "")

    def write(self, data: bytes) -> None:
        try:
            decoded = self.decoder.feed(data)
        except ValueError as exc:  # binascii.Error among them
            raise InvalidJob(f"{self.described} cannot be decoded: {exc}") from None
        self._write(decoded)

    def _write(self, decoded: bytes) -> None:
        if decoded:
            self.written(len(decoded))
            self.size += len(decoded)
            self.file.write(decoded)

    def finish(self) -> None:
        try:
            decoded = self.decoder.finish()
        except ValueError as exc:
            raise InvalidJob(f"{self.described} cannot be decoded: {exc}") from None
        self._write(decoded)
        self.file.seek(0)


@dataclass
class ReadMessage:
    headers: EmailMessage
    body: str | None = None
    attachments: list[UploadFile] = field(default_factory=list)

    def close(self) -> None:
        for upload in self.attachments:
            upload.file.close()


def _pieces(file: IO[bytes]) -> Iterator[bytes]:
    while piece := file.readline(READ):
        yield piece


def _text(part: _Part) -> str | None:
    """The part as text, if it is a body that decodes exactly as it says."""
    if part.size > BODY_LIMIT:
        return None
    try:
        codecs.lookup(part.shape.charset)
        text = part.file.read().decode(part.shape.charset)
    except (LookupError, UnicodeDecodeError, ValueError):
        part.file.seek(0)
        return None
    return text.replace("\r\n", "\n")


class _Reader:
    def __init__(self, threshold: int, decoded: Callable[[int], None]) -> None:
        self.threshold = threshold
        self.decoded_size = 0  # of every part so far
        self.decoded = decoded
        self.message: ReadMessage | None = None
        self.boundaries: list[tuple[bytes, bool]] = []  # (delimiter, an alternative) innermost last
        self.header: bytearray | None = bytearray()  # a header block being read
        self.part: _Part | None = None  # the leaf being read; None: a preamble or epilogue
        self.parts = 0
        self.line_start = True
        self.held = b""  # the line end before a boundary belongs to the boundary

    def feed(self, piece: bytes) -> None:
        line_start, self.line_start = self.line_start, piece.endswith(b"\n")
        if self.header is not None:
            self.header += piece
            if len(self.header) > HEADER_LIMIT:
                where = "the message" if self.message is None else f"part {self.parts}"
                raise InvalidJob(f"the header of {where} is longer than {HEADER_LIMIT} bytes")
            if line_start and piece in (b"\r\n", b"\n"):
                self._headers_read()
            return
        if line_start and self.line_start and piece.startswith(b"--") and self._boundary(piece):
            return
        if self.part is not None:
            self.part.write(self.held)
            body = piece.rstrip(b"\r\n")
            self.held = piece[len(body) :]
            self.part.write(body)

    def _boundary(self, piece: bytes) -> bool:
        line = piece.rstrip(b" \t\r\n")
        for depth in range(len(self.boundaries) - 1, -1, -1):
            delimiter = self.boundaries[depth][0]
            if line == delimiter:
                self._end_part()
                del self.boundaries[depth + 1 :]
                self.parts += 1
                if self.parts > MAX_PARTS:
                    raise InvalidJob(f"the message has more than {MAX_PARTS} parts")
                self.header = bytearray()
                return True
            if line == delimiter + b"--":
                self._end_part()
                del self.boundaries[depth:]
                return True
        return False

    def _headers_read(self) -> None:
        assert self.header is not None
        where = "the message" if self.message is None else f"part {self.parts}"
        try:
            headers = _parser.parsebytes(bytes(self.header), headersonly=True)
            if not isinstance(headers, EmailMessage):  # the default policy always makes one
                raise TypeError(type(headers))
            shape = _shape(headers)
        except HEADER_ERRORS:
            raise InvalidJob(f"the header of {where} cannot be read") from None
        self.header = None
        in_alternative = bool(self.boundaries) and self.boundaries[-1][1]
        if self.message is None:
            self.message = ReadMessage(headers)
        if shape.boundary:
            delimiter = b"--" + shape.boundary.encode("utf-8", "surrogateescape")
            self.boundaries.append((delimiter, shape.content_type == "multipart/alternative"))
            self.part = None
        else:
            self.part = _Part(max(self.parts, 1), shape, in_alternative, self.threshold, self._written)

    def _written(self, size: int) -> None:
        self.decoded_size += size
        self.decoded(self.decoded_size)

    def _end_part(self) -> None:
        part, self.part, self.held = self.part, None, b""
        if part is None:
            return
        try:
            part.finish()
        except InvalidJob:
            part.file.close()
            raise
        assert self.message is not None
        message = self.message
        shape = part.shape
        if message.body is None and shape.content_type == "text/plain" and shape.disposition != "attachment":
            message.body = _text(part)
            if message.body is not None:
                part.file.close()
                return
        elif part.in_alternative:
            part.file.close()  # another form of the body (HTML): the text one is sent
            return
        message.attachments.append(
            UploadFile(
                cast("BinaryIO", part.file),
                size=part.size,
                filename=shape.filename or f"attachment-{len(message.attachments) + 1}",
                headers=Headers({"content-type": shape.content_type}),
            )
        )

    def finish(self) -> ReadMessage:
        if self.header is not None and self.message is None:
            self._headers_read()  # a message of headers only
            self.part = None
        if self.part is not None and self.part.number == 1 and not self.boundaries:
            self.part.write(self.held)  # a single-part message ends with its last line
            self.held = b""
        self._end_part()
        assert self.message is not None
        return self.message


def _uncounted(size: int) -> None:
    pass


def read_message(file: IO[bytes], threshold: int, decoded: Callable[[int], None] = _uncounted) -> ReadMessage:
    """The message in `file` (CRLF lines, from its start); `InvalidJob` naming the part that
    cannot be read. Decoded parts above `threshold` bytes are spooled to disk; `decoded` is
    told the size of all the parts' decoded content so far each time it grows (and may raise
    to stop the reading: the parts read so far are closed)."""
    reader = _Reader(threshold, decoded)
    try:
        for piece in _pieces(file):
            reader.feed(piece)
        return reader.finish()
    except BaseException:
        if reader.part is not None:
            reader.part.file.close()
        if reader.message is not None:
            reader.message.close()
        raise
