"""The SMTP listener's pure pieces: DATA into a spool, the message read part by part from it,
the connection counts and the rate asked at MAIL FROM (no server: the real listener is driven in
tests/security/test_smtp_listener_resources.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from collections.abc import Iterator
from email.message import EmailMessage
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import Envelope, Session
from fleetmail_contracts.jobs import JobFunction
from job_gateway.domain import Device, DeviceLogin
from job_gateway.errors import InvalidJob
from job_gateway.ratelimit import RateLimiter
from job_gateway.settings import GatewaySettings
from job_gateway.smtp_connections import ConnectionLimits
from job_gateway.smtp_data import DataSpool
from job_gateway.smtp_listener import SubmissionHandler
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


def test_connections_are_capped_per_address_and_in_total() -> None:
    limits = ConnectionLimits(total=3, per_address=2)
    assert limits.admit("10.0.0.1") is None and limits.admit("10.0.0.1") is None
    refusal = limits.admit("10.0.0.1")
    assert refusal is not None and "10.0.0.1" in refusal
    assert limits.admit("10.0.0.2") is None
    assert limits.admit("10.0.0.3") == "too many connections; try again later"
    assert limits.worth_logging("10.0.0.1")  # its first refusal
    assert limits.admit("10.0.0.1") is not None and not limits.worth_logging("10.0.0.1")
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.3") is None and limits.open == {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1}


async def test_a_device_out_of_jobs_is_refused_at_mail_from_before_it_sends_its_message() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=lambda: 0.0)
    handler = SubmissionHandler(
        SimpleNamespace(limiter=limiter),  # type: ignore[arg-type]  # only its rate is asked
        SimpleNamespace(),  # type: ignore[arg-type]
        GatewaySettings(),
    )
    session = Session(asyncio.get_running_loop())
    session.authenticated = True
    session.auth_data = DeviceLogin(Device("mfp-1", "t1"), JobFunction.SCAN_TO_EMAIL, "auth")  # type: ignore[assignment]
    assert (await handler.handle_MAIL(None, session, Envelope(), "mfp@x.example", [])).startswith("250")  # type: ignore[arg-type]
    limiter.take("t1/mfp-1")  # its one job, taken in
    reply = await handler.handle_MAIL(None, session, Envelope(), "mfp@x.example", [])  # type: ignore[arg-type]
    assert re.fullmatch(r"450 4\.7\.1 this device sent more than 1 jobs at once; try again in \d+ s", reply)
