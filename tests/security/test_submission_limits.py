"""One device cannot fill the gateway's disk or memory: a submission over the limits is
refused while it streams in (HTTP 413, SMTP 552 5.3.4), a tenant's submissions in flight —
what has arrived of them, HTTP bodies and SMTP DATA alike — are bounded (HTTP 507 +
Retry-After, SMTP 452 4.3.1) without touching another tenant's, and a body that stops
arriving is refused (408) rather than held.

A job-gateway of this module's own (a replica of the stack's, with small limits and a
temporary directory of its own) is measured from outside: the files it holds open in that
directory (the parser's spooled uploads, unlinked but still open) and its resident set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import smtplib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from fleetmail_devkit.ports import free_port

from tests.utils import eventually
from tests.utils.servers import scratch_dir
from tests.utils.smtp import scan
from tests.utils.tenants import tenant_with_device

MIB = 1024 * 1024
LIMIT = 2 * MIB
DEVICE_POLICY = "administrator_address"
"""The device's mail is sent as the administrator: these tests are about sizes, and under the
login-user policies a message From outside the tenant's domains is refused before its size."""
IN_FLIGHT = 3 * MIB
"""The tenant's share; a device's is its default, max(IN_FLIGHT / 2, LIMIT) = LIMIT."""
BODY_READ_TIMEOUT_S = 5
"""Long enough for another device's upload to be taken in while silent bodies wait."""
OVER_BY = 48 * MIB
CHUNK = 256 * 1024
BOUNDARY = "fleetmail-limits"
PROBLEMS = "https://fleetmail.dev/problems/"


@dataclass
class Gateway:
    url: str
    smtp_port: int
    pid: int
    tmp: Path

    def spooled_bytes(self) -> int:
        """Bytes of the files the gateway holds open in its temporary directory."""
        total = 0
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                if os.readlink(fd).startswith(str(self.tmp)):
                    total += os.stat(fd).st_size
            except OSError:
                continue  # closed meanwhile
        return total

    def memory_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for process {self.pid}")


@pytest.fixture(scope="module")
async def gateway(stack) -> AsyncIterator[Gateway]:
    ports = {name: free_port() for name in ("http", "starttls", "tls", "plain")}
    async with scratch_dir("fleetmail-gateway-tmp-") as tmp:
        replica = await stack.add_replica(
            "job-gateway",
            {
                "TMPDIR": str(tmp),
                "FLEETMAIL_GATEWAY_MAX_SUBMISSION_BYTES": str(LIMIT),
                "FLEETMAIL_GATEWAY_TENANT_BYTES_IN_FLIGHT": str(IN_FLIGHT),
                "FLEETMAIL_GATEWAY_BODY_READ_TIMEOUT_S": str(BODY_READ_TIMEOUT_S),
                "FLEETMAIL_GATEWAY_PORT": str(ports["http"]),
                "FLEETMAIL_GATEWAY_SMTP_STARTTLS_PORT": str(ports["starttls"]),
                "FLEETMAIL_GATEWAY_SMTP_TLS_PORT": str(ports["tls"]),
                "FLEETMAIL_GATEWAY_SMTP_PLAIN_PORT": str(ports["plain"]),
            },
        )
        assert replica.process is not None
        try:
            yield Gateway(f"http://127.0.0.1:{ports['http']}", ports["plain"], replica.process.pid, tmp)
        finally:
            await stack.stop_part(replica)


def _part_head(name: str, filename: str | None = None, content_type: str = "application/pdf") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode()


def _job_part(subject: str) -> bytes:
    job = {"to": ["boss@fabrikam.example"], "subject": subject}
    return _part_head("job") + json.dumps(job).encode() + b"\r\n"


def _form(subject: str | None, file_size: int) -> bytes:
    """A whole form: the job part (unless None) and one PDF of `file_size` bytes."""
    job = _job_part(subject) if subject is not None else b""
    document = b"%PDF-1.4 " + b"\0" * (file_size - 9)
    return job + _part_head("files", "scan.pdf") + document + f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def _jobs(admin: httpx.AsyncClient, tenant_id: str) -> list[dict]:
    return (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs")).json()


def _problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEMS + code, body
    return body


async def test_too_many_files_are_refused_and_nothing_is_stored(gateway, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    files = [("files", (f"page-{n}.pdf", b"%PDF-1.4 page", "application/pdf")) for n in range(21)]
    async with httpx.AsyncClient(base_url=gateway.url, auth=device, timeout=30) as panel:
        job = {"job": json.dumps({"to": ["boss@fabrikam.example"], "subject": "21 pages"})}
        refused = await panel.post("/v1/jobs", data=job, files=files)
        body = _problem(refused, 413, "too-many-attachments")
        assert "at most 20" in body["detail"]
        accepted = await panel.post("/v1/jobs", data=job, files=files[:20])
        assert accepted.status_code == 202, accepted.text
    assert [j["job_id"] for j in await _jobs(admin, tenant_id)] == [accepted.json()["job_id"]]


async def test_a_body_over_the_limit_is_refused_before_it_is_spooled(gateway, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    total = LIMIT + OVER_BY
    seen = {"sent": 0, "spooled": 0, "rss_kb": 0}

    async def body() -> AsyncIterator[bytes]:
        """A 50 MB scan, streamed without a Content-Length, watching the gateway as it goes."""
        yield _job_part("too big") + _part_head("files", "huge.pdf")
        while seen["sent"] < total:
            seen["spooled"] = max(seen["spooled"], gateway.spooled_bytes())
            seen["rss_kb"] = max(seen["rss_kb"], gateway.memory_kb("VmRSS"))
            seen["sent"] += CHUNK
            yield b"\0" * CHUNK
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    peak_before_kb = gateway.memory_kb("VmHWM")
    rss_before_kb = gateway.memory_kb("VmRSS")
    async with httpx.AsyncClient(base_url=gateway.url, auth=device, timeout=30) as panel:
        refused = await panel.post("/v1/jobs", content=body(), headers=HEADERS)
    body_ = _problem(refused, 413, "submission-too-large")
    assert f"at most {LIMIT} bytes" in body_["detail"]
    assert seen["sent"] >= total  # the rest was read and dropped: sent, but never kept
    # Neither the disk nor the memory took the body in: at most the limit and a few chunks.
    assert seen["spooled"] <= LIMIT + 4 * CHUNK, seen
    assert gateway.spooled_bytes() == 0
    assert seen["rss_kb"] - rss_before_kb < OVER_BY // 1024 // 4, (seen, rss_before_kb)
    assert gateway.memory_kb("VmHWM") - peak_before_kb < OVER_BY // 1024 // 4
    assert await _jobs(admin, tenant_id) == []


async def test_a_declared_size_over_the_limit_is_refused_before_a_byte_is_read(gateway, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < LIMIT + MIB:
            sent += CHUNK
            yield b"\0" * CHUNK

    headers = {**HEADERS, "Content-Length": str(LIMIT + MIB)}
    async with httpx.AsyncClient(base_url=gateway.url, auth=device, timeout=30) as panel:
        refused = await panel.post("/v1/jobs", content=body(), headers=headers)
    _problem(refused, 413, "submission-too-large")
    assert await _jobs(admin, tenant_id) == []


def _smtp(gateway: Gateway, device: tuple[str, str], message: EmailMessage) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
        smtp.ehlo("mfp")
        smtp.login(*device)
        try:
            smtp.send_message(message, "mfp@contoso.example", ["boss@fabrikam.example"])
        except smtplib.SMTPResponseException as refused:
            return refused.smtp_code, refused.smtp_error.decode()
    return 250, ""


async def test_smtp_refuses_a_message_over_the_limits(gateway, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    too_big = scan(subject="too big", size=LIMIT + 1024)
    code, reply = await asyncio.to_thread(_smtp, gateway, device, too_big)
    assert (code, reply.split()[0]) == (552, "5.3.4"), reply
    many = scan(subject="21 pages")
    for n in range(20):
        many.add_attachment(b"%PDF-1.4 page", maintype="application", subtype="pdf", filename=f"{n}.pdf")
    code, reply = await asyncio.to_thread(_smtp, gateway, device, many)
    assert (code, reply.split()[0]) == (552, "5.3.4") and "at most 20" in reply, reply
    assert await _jobs(admin, tenant_id) == []


async def test_smtp_data_over_the_limit_undeclared_is_refused_whole_and_the_session_goes_on(
    gateway, admin
) -> None:
    """A client that does not declare the size (no SIZE at MAIL FROM) is refused after its
    data, with nothing queued; the session goes on, and a message within the limit is queued —
    the only job."""
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)

    def undeclared() -> tuple[int, bytes, int, bytes]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
            smtp.ehlo("mfp")
            smtp.login(*device)
            smtp.docmd("MAIL FROM:<mfp@contoso.example>")
            smtp.rcpt("boss@fabrikam.example")
            over = smtp.data(scan(subject="too big", size=LIMIT + 1024).as_string())
            smtp.docmd("MAIL FROM:<mfp@contoso.example>")
            smtp.rcpt("boss@fabrikam.example")
            return (*over, *smtp.data(scan(subject="within").as_string()))

    over_code, over_reply, code, reply = await asyncio.to_thread(undeclared)
    assert over_code == 552, over_reply
    assert code == 250, reply
    [job] = await _jobs(admin, tenant_id)
    assert job["job_id"] == reply.decode().rsplit(" ", 1)[-1]


async def _another_device(admin: httpx.AsyncClient, tenant_id: str) -> tuple[str, str]:
    device = (
        await admin.post(
            f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"d-{uuid.uuid4().hex[:8]}"}
        )
    ).json()
    return device["device_id"], device["secret"]


async def test_a_tenant_past_its_bytes_in_flight_waits_and_another_tenant_does_not(
    stack, gateway, admin
) -> None:
    busy_tenant, busy = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    colleague = await _another_device(admin, busy_tenant)
    other_tenant, other = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    # A slow upload of the busy tenant's first device: its first 1.5 MB are read (spooled to
    # the gateway's disk) and held; the rest trickles in, a byte at a time, until released.
    slow = _form(f"slow-{uuid.uuid4().hex[:6]}", LIMIT - 4096)
    first = MIB + MIB // 2
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield slow[:first]
        sent = first
        while not release.is_set() and sent < len(slow) - 1:
            # Keeps the body arriving within the body-read timeout: not a synchronisation.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), BODY_READ_TIMEOUT_S / 6)
            yield slow[sent : sent + 1]
            sent += 1
        yield slow[sent:]

    async with (
        httpx.AsyncClient(base_url=gateway.url, auth=busy, timeout=30) as busy_panel,
        httpx.AsyncClient(base_url=gateway.url, auth=colleague, timeout=30) as colleague_panel,
        httpx.AsyncClient(base_url=gateway.url, auth=other, timeout=30) as other_panel,
    ):
        slow_upload = asyncio.create_task(
            busy_panel.post(
                "/v1/jobs", content=slow_body(), headers={**HEADERS, "Content-Length": str(len(slow))}
            )
        )
        try:
            await eventually(
                lambda: gateway.spooled_bytes() > first - 64 * 1024, what="the slow upload to be read"
            )
            # The colleague's submission fits its device's share, not what is left of the tenant's.
            refused = await colleague_panel.post(
                "/v1/jobs", content=_form("busy", LIMIT - 4096), headers=HEADERS
            )
            body = _problem(refused, 507, "too-many-bytes-in-flight")
            assert int(refused.headers["retry-after"]) >= 1 and "try again" in body["detail"]
            assert "this tenant's" in body["detail"], body
            # Over SMTP, a message is held with its decoded parts: 1 MB of DATA fits, its
            # attachment decoded beside it does not.
            code, reply = await asyncio.to_thread(_smtp, gateway, colleague, scan(size=MIB * 3 // 4))
            assert (code, reply.split()[0]) == (452, "4.3.1"), reply
            # The other tenant's share is its own.
            theirs = _form("other tenant", MIB + MIB // 2)
            accepted = await other_panel.post("/v1/jobs", content=theirs, headers=HEADERS)
            assert accepted.status_code == 202, accepted.text
            code, reply = await asyncio.to_thread(_smtp, gateway, other, scan(size=MIB // 2))
            assert code == 250, reply
        finally:
            release.set()
            finished = await slow_upload
        assert finished.status_code == 202, finished.text
        # Taken in, the slow upload's bytes are the tenant's again.
        again = await colleague_panel.post(
            "/v1/jobs", content=_form("after", MIB + MIB // 2), headers=HEADERS
        )
        assert again.status_code == 202, again.text
    assert {j["job_id"] for j in await _jobs(admin, busy_tenant)} == {
        finished.json()["job_id"],
        again.json()["job_id"],
    }
    assert len(await _jobs(admin, other_tenant)) == 2


class _Data:
    """An SMTP session of a device stopped inside DATA: lines of the message are sent on
    demand, never its final dot; `refusal` is the reply the gateway sent meanwhile, if any."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0
        self.reply: asyncio.Task[bytes] = asyncio.create_task(reader.readline())

    @classmethod
    async def open(cls, port: int, device: tuple[str, str]) -> _Data:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def reply() -> bytes:
            while (line := await reader.readline()) and line[3:4] == b"-":
                pass
            return line

        await reply()
        credentials = base64.b64encode(f"\0{device[0]}\0{device[1]}".encode()).decode()
        for command in (
            "EHLO mfp",
            f"AUTH PLAIN {credentials}",
            "MAIL FROM:<mfp@contoso.example>",
            "RCPT TO:<boss@fabrikam.example>",
            "DATA",
        ):
            writer.write(command.encode() + b"\r\n")
            answer = await reply()
            assert answer[:1] in (b"2", b"3"), (command.split()[0], answer)
        writer.write(b"Subject: endless\r\n\r\n")
        return cls(reader, writer)

    async def send(self, size: int) -> None:
        """`size` more bytes of the message (lines of 1,000), or fewer if a reply came first."""
        line = b"x" * 998 + b"\r\n"
        goal = self.sent + size
        while self.sent < goal and not self.reply.done():
            self.writer.write(line * 64)
            self.sent += len(line) * 64
            await self.writer.drain()

    async def refusal(self) -> str:
        return (await asyncio.wait_for(self.reply, 30)).decode().strip()

    async def close(self) -> None:
        self.reply.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_smtp_data_past_the_tenants_share_is_refused_while_it_streams(gateway, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    colleague = await _another_device(admin, tenant_id)
    _, other = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    # Two devices of one tenant send DATA that never ends: what arrives is held as it is spooled.
    endless = await _Data.open(gateway.smtp_port, device)
    past = await _Data.open(gateway.smtp_port, colleague)
    try:
        await endless.send(MIB + MIB // 2)
        await eventually(
            lambda: gateway.spooled_bytes() >= MIB + MIB // 2 - 64 * 1024, what="the DATA to be spooled"
        )
        assert not endless.reply.done()
        # The second passes the tenant's share while it streams: told so at once, though its
        # DATA never ends (up to 8 MB are sent, fewer once the reply has come).
        await past.send(8 * MIB)
        refusal = await past.refusal()
        assert refusal.startswith("452 4.3.1") and "this tenant's" in refusal, refusal
        # Its spool is gone at once, though the device goes on sending: only the first's is kept.
        await past.send(MIB)
        await eventually(
            lambda: gateway.spooled_bytes() < MIB + MIB // 2 + 64 * 1024, what="the refused spool to go"
        )
        # Another tenant's device delivers meanwhile.
        code, reply = await asyncio.to_thread(_smtp, gateway, other, scan(size=MIB // 2))
        assert code == 250, reply
    finally:
        await past.close()
        await endless.close()

    # The device that gave up its DATA holds nothing any more: its tenant's devices deliver.
    async def delivered() -> bool:
        code, _reply = await asyncio.to_thread(_smtp, gateway, device, scan(size=MIB // 2))
        return code == 250

    await eventually(delivered, what="the abandoned DATA's hold to be released")
    await eventually(lambda: gateway.spooled_bytes() == 0, what="the abandoned spool to go")
    assert len(await _jobs(admin, tenant_id)) == 1


async def _silent_post(gateway: Gateway, device: tuple[str, str]) -> asyncio.Task[bytes]:
    """A submission that declares a body as large as allowed and sends none of it; the task
    reads what the gateway answers, until it closes the connection."""
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    credentials = base64.b64encode(f"{device[0]}:{device[1]}".encode()).decode()
    writer.write(
        (
            f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {credentials}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {LIMIT}\r\n\r\n"
        ).encode()
    )
    await writer.drain()

    async def answer() -> bytes:
        try:
            return await reader.read()  # to the end: the gateway closes the connection
        finally:
            writer.close()

    return asyncio.create_task(answer())


async def test_bodies_that_never_arrive_hold_nothing_and_are_refused_after_the_read_timeout(
    gateway, admin
) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False, from_policy=DEVICE_POLICY)
    colleague = await _another_device(admin, tenant_id)
    silent = [await _silent_post(gateway, device) for _ in range(4)]  # 4 x LIMIT declared
    async with httpx.AsyncClient(base_url=gateway.url, auth=colleague, timeout=30) as panel:
        accepted = await panel.post("/v1/jobs", content=_form("meanwhile", LIMIT - 4096), headers=HEADERS)
        assert accepted.status_code == 202, accepted.text
        assert not any(task.done() for task in silent)  # still waiting for their bodies
    answers = await asyncio.wait_for(asyncio.gather(*silent), 30)
    for answer in answers:  # each answered 408 once nothing had arrived for the timeout, then closed
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"content-type: application/problem+json" in head.lower()
        assert json.loads(body)["type"] == PROBLEMS + "body-read-timeout"
    # Nothing of theirs is held: the same device submits at once.
    async with httpx.AsyncClient(base_url=gateway.url, auth=device, timeout=30) as panel:
        again = await panel.post("/v1/jobs", content=_form("after", LIMIT - 4096), headers=HEADERS)
        assert again.status_code == 202, again.text
    assert len(await _jobs(admin, tenant_id)) == 2
