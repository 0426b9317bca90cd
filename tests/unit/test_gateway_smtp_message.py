"""The SMTP listener's pure pieces: DATA into a spool, the message read part by part from it
(no server: the real listener is driven in tests/security/test_smtp_listener_resources.py)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from job_gateway.errors import InvalidJob
from job_gateway.smtp_data import DataSpool
from job_gateway.smtp_message import MAX_PARTS, ReadMessage, read_message

from tests.utils.smtp import scan

OPENED: list[DataSpool | ReadMessage] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    """Every spool a test made is closed after it (a temporary file each)."""
    yield
    while OPENED:
        OPENED.pop().close()


def spooled(raw: bytes, *, limit: int | None = None, piece: int | None = None) -> DataSpool:
    """`raw` sent as DATA (dot-stuffed, any line ends), fed in lines, or in pieces of at most
    `piece` bytes, as the listener reads a line longer than its buffer."""
    spool = DataSpool(limit, threshold=1024)
    OPENED.append(spool)
    for line in io.BytesIO(raw).readlines():
        line = b"." + line if line.startswith(b".") else line
        chunks = [line] if piece is None else [line[i : i + piece] for i in range(0, len(line), piece)]
        for chunk in chunks:
            assert not spool.feed(chunk)
    assert spool.feed(b".\n")  # a bare-LF device ends its message so too
    return spool


def read(raw: bytes, **kwargs: int) -> ReadMessage:
    message = read_message(spooled(raw, **kwargs).file, threshold=1024)
    OPENED.append(message)
    return message


def crlf(message: EmailMessage) -> bytes:
    return message.as_bytes().replace(b"\n", b"\r\n")


def test_data_becomes_crlf_lines_without_the_dots_of_transparency() -> None:
    spool = DataSpool(None, threshold=1024)
    OPENED.append(spool)
    for piece in (b"a\n", b"..b\r\n", b".c\n", b"..\r\n", b"last\n"):
        assert not spool.feed(piece)
    assert spool.feed(b".\r\n")
    assert spool.file.read() == b"a\r\n.b\r\nc\r\n.\r\nlast\r\n"
    assert not spool.too_large


def test_a_long_line_is_taken_in_pieces_and_a_cr_split_from_its_lf_is_one_line_end() -> None:
    line = b"x" * 5000 + b"\r\n"
    spool = spooled(line + b".starts with a dot\r\n", piece=1001)
    assert spool.file.read() == line + b".starts with a dot\r\n"
    spool = spooled(b"y" * 1001 + b"\r\n", piece=1002)  # "...y\r" then "\n"
    assert spool.file.read() == b"y" * 1001 + b"\r\n"


def test_data_over_the_limit_is_read_to_its_end_and_not_kept() -> None:
    spool = spooled(b"0123456789\r\n" * 100, limit=500)
    assert spool.too_large and len(spool.file.read()) <= 500


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"])
def test_a_scan_is_read_into_its_body_and_an_attachment_of_the_same_bytes(line_end: bytes) -> None:
    document = bytes(range(256)) * 4000  # ~1 MB: spooled to disk past the threshold
    raw = scan(document=document).as_bytes().replace(b"\n", line_end)
    message = read(raw)
    assert message.body == "Please find the scan attached.\n"
    assert str(message.headers["Subject"]) == "Scan from an old MFP"
    [upload] = message.attachments
    assert (upload.filename, upload.content_type, upload.size) == (
        "scan.pdf",
        "application/pdf",
        len(document),
    )
    assert upload.file.read() == document


def test_the_text_body_of_an_alternative_is_the_body_and_its_html_is_dropped() -> None:
    message = EmailMessage()
    message["Subject"] = "Alternatives"
    message.set_content("plain words")
    message.add_alternative("<p>html words</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    read_back = read(crlf(message))
    assert read_back.body == "plain words\n"
    assert [(u.filename, u.file.read()) for u in read_back.attachments] == [("a.pdf", b"%PDF-1.4")]


@pytest.mark.parametrize(
    ("charset", "text"),
    [("x-unknown-charset", b"caf\xe9 na\xefve"), ("utf-8", b"caf\xe9: not UTF-8")],
)
def test_a_body_that_is_not_the_text_it_says_is_carried_as_an_attachment_unchanged(
    charset: str, text: bytes
) -> None:
    raw = (
        b"Subject: =?x-unknown-charset?q?Caf=E9?=\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text + b"\r\n"
    )
    message = read(raw)
    assert message.body is None
    [upload] = message.attachments
    assert upload.content_type == "text/plain" and upload.file.read() == text + b"\r\n"
    subject = str(message.headers["Subject"])
    subject.encode("utf-8")  # no surrogates: the job's JSON can carry it


def test_quoted_printable_is_decoded_across_pieces() -> None:
    body = "=".join(["é" * 40] * 60)  # soft breaks and escapes in long lines
    message = EmailMessage()
    message.set_content("body")
    message.add_attachment(body, subtype="plain", cte="quoted-printable", filename="notes.txt")
    [upload] = read(crlf(message), piece=7).attachments
    assert upload.file.read().decode() == body + "\r\n"  # a hard line end as sent


def test_base64_that_ends_mid_byte_is_refused_naming_the_part() -> None:
    message = EmailMessage()
    message.set_content("body")
    message.add_attachment(b"x", maintype="application", subtype="pdf", filename="broken.pdf")
    raw = crlf(message).replace(base64.b64encode(b"x"), b"eA=\r\nA")
    with pytest.raises(InvalidJob, match=r"part 2 \(broken.pdf\) cannot be decoded"):
        read(raw)


def test_oversized_headers_and_too_many_parts_are_refused() -> None:
    with pytest.raises(InvalidJob, match="header of the message is longer"):
        read(b"Subject: x\r\n" + b"X-Pad: " + b"p" * 70_000 + b"\r\n\r\nbody\r\n", piece=1000)
    message = EmailMessage()
    message.set_content("body")
    for n in range(MAX_PARTS):
        message.add_attachment(b"x", maintype="application", subtype="pdf", filename=f"{n}.pdf")
    with pytest.raises(InvalidJob, match=f"more than {MAX_PARTS} parts"):
        read(crlf(message))
