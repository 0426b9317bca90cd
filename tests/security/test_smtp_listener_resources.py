"""One sender cannot exhaust the SMTP listener, and messages as devices really send them are
taken in.

The limits are crossed on a job-gateway replica of this module's (the stack's harness for
settings of one's own): 20 connections per source address, 4 s of silence, 6 s to sign in,
3 jobs per device; the other tests keep production's defaults (see the gateway's README).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
from fleetmail_devkit.ports import free_port
from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.jobs import delivered_with_subject
from tests.utils.smtp import context, scan, send_raw

PER_ADDRESS = 20
IDLE = 1000
BURST = 3


@dataclass(frozen=True)
class Guarded:
    plain: int
    tls: int  # implicit TLS
    starttls: int


@pytest.fixture(scope="module")
async def guarded(stack) -> AsyncIterator[Guarded]:
    """The plain and implicit-TLS SMTP ports of a job-gateway replica with small limits (same
    bus, same store). Its TLS handshake timeout is production's 10 s."""
    ports = Guarded(plain=free_port(), tls=free_port(), starttls=free_port())
    replica = await stack.add_replica(
        "job-gateway",
        {
            "FLEETMAIL_GATEWAY_PORT": str(free_port()),
            "FLEETMAIL_GATEWAY_SMTP_STARTTLS_PORT": str(ports.starttls),
            "FLEETMAIL_GATEWAY_SMTP_TLS_PORT": str(ports.tls),
            "FLEETMAIL_GATEWAY_SMTP_PLAIN_PORT": str(ports.plain),
            "FLEETMAIL_GATEWAY_SMTP_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
            "FLEETMAIL_GATEWAY_SMTP_IDLE_TIMEOUT_S": "4",
            "FLEETMAIL_GATEWAY_SMTP_SIGN_IN_WITHIN_S": "6",
            "FLEETMAIL_GATEWAY_DEVICE_RATE_BURST": str(BURST),
            "FLEETMAIL_GATEWAY_DEVICE_RATE_PER_S": "0.0001",
        },
    )
    try:
        yield ports
    finally:
        await stack.stop_part(replica)


@pytest.fixture
def guarded_port(guarded: Guarded) -> int:
    return guarded.plain


@pytest.fixture
async def device(stack, emulator_http) -> tuple[str, str]:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    return await register_device(stack, principal.tenant_id)


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A connection and the listener's first line to it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, writer, await reader.readline()


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    """`text` sent, and the last line of its reply."""
    writer.write(text + b"\r\n")
    while (line := await reader.readline())[3:4] == b"-":
        pass
    return line


async def _sign_in(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, device: tuple[str, str]
) -> None:
    assert (await _command(reader, writer, b"EHLO mfp")).startswith(b"250 ")
    user, secret = device
    plain = base64.b64encode(f"\0{user}\0{secret}".encode())
    assert (await _command(reader, writer, b"AUTH PLAIN " + plain)).startswith(b"235")


async def _noop_until_refused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """What a client holding connections does to defeat the idle timeout: a NOOP every half
    second (the replica's timeout is 4 s: at 2 s, a loaded runner once stalled this loop past
    it, and the freed places let more in). The first reply that is not a 250 (b"" once closed)."""
    while True:
        line = await _command(reader, writer, b"NOOP")
        if not line.startswith(b"250"):
            return line
        await asyncio.sleep(0.5)  # pacing, not waiting for anything


async def _keep_alive(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, device: tuple[str, str]
) -> None:
    """Signed in first: a connection that never signs in is closed however busy it keeps
    (`test_a_client_that_never_signs_in_is_closed_however_busy`)."""
    await _sign_in(reader, writer, device)
    await _noop_until_refused(reader, writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.mark.timeout(90)
async def test_a_thousand_idle_connections_from_one_address_are_capped_and_a_device_still_delivers(
    stack, emulator_http, device, guarded_port
) -> None:
    """Idle: they send no mail. Those admitted sign in and are kept alive with NOOPs, as a
    client holding connections would, so no timeout is what frees them: the cap alone holds."""
    port = guarded_port
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]] = []
    alive: list[asyncio.Task[None]] = []
    try:
        for _ in range(IDLE // 100):
            batch = await asyncio.gather(*(_open(port) for _ in range(100)))
            opened += batch
            alive += [
                asyncio.create_task(_keep_alive(r, w, device))
                for r, w, first in batch
                if first.startswith(b"220 ")
            ]
        greeted = [first for _, _, first in opened if first.startswith(b"220 ")]
        refused = [first for _, _, first in opened if first.startswith(b"421 4.7.0 ")]
        assert 0 < len(greeted) <= PER_ADDRESS and len(greeted) + len(refused) == IDLE, opened[-1][2]
        assert b"too many connections from 127.0.0.1" in refused[0]
        # A refused connection is closed by the listener, not left open.
        assert await opened[-1][0].read() == b""

        # Meanwhile a device on another address sends its scan as usual.
        subject = f"Scan during a flood {uuid.uuid4().hex[:6]}"
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, source_address=("127.0.0.2", 0), timeout=30
        ) as smtp:
            await smtp.login(*device)
            errors, reply = await smtp.send_message(scan(subject))
        assert errors == {} and "queued as" in reply, reply
        await _delivered(stack, emulator_http, subject)
        assert not any(task.done() for task in alive)  # the admitted ones were served throughout
    finally:
        for task in alive:
            task.cancel()
        await asyncio.gather(*(_close(writer) for _, writer, _ in opened))

    # Once they are gone, the address is served again.
    async def served() -> bool:
        _, writer, first = await _open(port)
        await _close(writer)
        return first.startswith(b"220 ")

    await eventually(served, what="a greeting for 127.0.0.1 once its connections closed")


@pytest.mark.timeout(60)
async def test_a_silent_client_is_closed_between_commands_and_within_data(device, guarded_port) -> None:
    port = guarded_port
    silent_reader, silent, greeting = await _open(port)
    assert greeting.startswith(b"220 ")
    slow_reader, slow, _ = await _open(port)
    try:
        slow.write(b"EHLO slow-mfp\r\n")
        while (await slow_reader.readline())[3:4] == b"-":
            pass
        user, secret = device
        slow.write(b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{secret}".encode()) + b"\r\n")
        assert (await slow_reader.readline()).startswith(b"235")
        slow.write(b"MAIL FROM:<mfp@contoso.example>\r\nRCPT TO:<boss@fabrikam.example>\r\n")
        assert (await slow_reader.readline()).startswith(b"250")
        assert (await slow_reader.readline()).startswith(b"250")
        slow.write(b"DATA\r\n")
        assert (await slow_reader.readline()).startswith(b"354")
        slow.write(b"Subject: half a message\r\n\r\nand then nothing more")
        # Both are told why and closed: the listener's reads end.
        for reader in (silent_reader, slow_reader):
            rest = await asyncio.wait_for(reader.read(), timeout=45)
            assert rest.startswith(b"421 4.4.2 ") and b"timeout" in rest, rest
    finally:
        await _close(silent)
        await _close(slow)


async def _delivered(stack, http: httpx.AsyncClient, subject: str) -> EmailMessage:
    async def found() -> EmailMessage | None:
        messages = await delivered_with_subject(stack, http, subject)
        return messages[0][1] if messages else None

    return await eventually(found, within=60, what=f"the message {subject!r} delivered")


async def test_messages_as_devices_send_them_are_delivered_with_their_bytes(
    stack, emulator_http, device
) -> None:
    port = stack.ports.gateway_smtp_lan
    tag = uuid.uuid4().hex[:6]
    document = bytes(range(256)) * 64

    # Bare-LF line ends throughout, the end of data included.
    bare = scan(f"Bare LF {tag}", document=document).as_bytes()
    assert b"\r\n" not in bare
    assert (await send_raw(port, *device, bare, end=b".\n")).startswith("250 "), "bare LF"

    # A text attachment with 5,000-octet lines (8bit, as some firmware writes its logs).
    long_lines = (b"x" * 5000 + b"\r\n") * 3
    long = (
        (
            f"Subject: Long lines {tag}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nA log.\r\n"
            '--b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="log.txt"\r\n'
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + long_lines
        + b"--b1--\r\n"
    )
    assert (await send_raw(port, *device, long)).startswith("250 "), "long lines"

    # A body in a charset nobody knows: carried as an attachment, byte for byte.
    odd_text = b"Scan r\xe9sum\xe9 \x81\x82\r\n"
    odd = (
        f"Subject: Unknown charset {tag}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=x-mfp-latin\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + odd_text
    assert (await send_raw(port, *device, odd)).startswith("250 "), "unknown charset"

    # A part that cannot be decoded at all is refused, naming it.
    broken = scan(f"Broken {tag}").as_bytes().replace(b"JVBERi0xLjQg", b"J===VBERi0xLjQg")
    refused = await send_raw(port, *device, broken.replace(b"\n", b"\r\n"))
    assert refused.startswith("550 5.6.0 part 2 (scan.pdf) cannot be decoded"), refused

    delivered = await _delivered(stack, emulator_http, f"Bare LF {tag}")
    [attachment] = delivered.iter_attachments()
    assert attachment.get_payload(decode=True) == document
    delivered = await _delivered(stack, emulator_http, f"Long lines {tag}")
    [attachment] = delivered.iter_attachments()
    assert attachment.get_filename() == "log.txt"
    # The line end before the closing boundary is the boundary's (RFC 2046 §5.1.1).
    sent = long_lines.removesuffix(b"\r\n")
    assert attachment.get_payload(decode=True).replace(b"\r\n", b"\n") == sent.replace(b"\r\n", b"\n")
    delivered = await _delivered(stack, emulator_http, f"Unknown charset {tag}")
    [attachment] = delivered.iter_attachments()
    assert attachment.get_payload(decode=True) == odd_text


@pytest.mark.timeout(90)
async def test_a_thousand_silent_connections_to_the_tls_port_are_capped_before_their_handshake(
    stack, emulator_http, device, guarded
) -> None:
    """Raw TCP, never a ClientHello: over the cap, closed at once; admitted, closed when the
    handshake times out. Meanwhile a device on another address delivers over implicit TLS."""
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(IDLE // 100):
        connections += await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", guarded.tls) for _ in range(100))
        )
    ends = [asyncio.create_task(reader.read()) for reader, _ in connections]

    def closed() -> int:
        return sum(end.done() for end in ends)

    try:
        at_once = await eventually(
            lambda: closed() >= IDLE - PER_ADDRESS and closed(),
            what="the connections over the cap closed by the listener",
        )
        # Those admitted wait for their handshake (10 s): what closed at once was the excess.
        assert at_once == IDLE - PER_ADDRESS, at_once

        subject = f"Scan over TLS during a flood {uuid.uuid4().hex[:6]}"
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=guarded.tls,
            source_address=("127.0.0.2", 0),
            use_tls=True,
            tls_context=context(stack),
            timeout=30,
        ) as smtp:
            await smtp.login(*device)
            errors, reply = await smtp.send_message(scan(subject))
        assert errors == {} and "queued as" in reply, reply
        await _delivered(stack, emulator_http, subject)

        # The admitted ones are closed by the listener's handshake timeout, not asyncio's 60 s.
        await eventually(lambda: closed() == IDLE, within=40, what="handshakes timed out")
    finally:
        for end in ends:
            end.cancel()
        await asyncio.gather(*(_close(writer) for _, writer in connections))

    async def served() -> bool:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=guarded.tls, use_tls=True, tls_context=context(stack), timeout=10
        ) as smtp:
            return (await smtp.noop()).code == 250

    await eventually(served, what="127.0.0.1 served over TLS once its connections closed")


@pytest.mark.timeout(60)
async def test_a_client_that_never_signs_in_is_closed_however_busy(guarded_port) -> None:
    reader, writer, greeting = await _open(guarded_port)
    try:
        assert greeting.startswith(b"220 ")
        assert (await _command(reader, writer, b"EHLO idler")).startswith(b"250 ")
        refusal = await asyncio.wait_for(_noop_until_refused(reader, writer), timeout=45)
        assert refusal.startswith(b"421 4.4.2 ") and b"timeout" in refusal, refusal
    finally:
        await _close(writer)


@pytest.mark.timeout(60)
async def test_a_device_passes_mail_from_in_as_many_sessions_as_it_has_jobs_left(
    device, guarded_port
) -> None:
    """Each session takes the device's token at MAIL FROM, before its message is sent; one
    that ends without a job (RSET) gives it back."""
    sessions = [(await _open(guarded_port))[:2] for _ in range(BURST + 3)]
    try:
        await asyncio.gather(*(_sign_in(reader, writer, device) for reader, writer in sessions))
        replies = await asyncio.gather(
            *(_command(reader, writer, b"MAIL FROM:<mfp@contoso.example>") for reader, writer in sessions)
        )
        passed = [
            session for session, reply in zip(sessions, replies, strict=True) if reply.startswith(b"250")
        ]
        refused = [
            session for session, reply in zip(sessions, replies, strict=True) if reply.startswith(b"450")
        ]
        assert (len(passed), len(refused)) == (BURST, 3), replies
        assert all(
            re.match(rb"450 4\.7\.1 this device sent more than 3 jobs", reply)
            for reply in replies
            if reply.startswith(b"450")
        )

        assert (await _command(*passed[0], b"RSET")).startswith(b"250")
        assert (await _command(*refused[0], b"MAIL FROM:<mfp@contoso.example>")).startswith(b"250")
        assert (await _command(*refused[1], b"MAIL FROM:<mfp@contoso.example>")).startswith(b"450")
    finally:
        await asyncio.gather(*(_close(writer) for _, writer in sessions))


@pytest.mark.timeout(60)
async def test_a_client_silent_inside_its_starttls_handshake_gives_its_connection_back(guarded) -> None:
    """EHLO, STARTTLS, then nothing, on every connection the address may hold: each is ended
    by the timer for strangers, and the address is served again. (Closing the TLS layer mid-
    handshake never told the protocol its connection was lost: the counts stayed taken and
    the address was refused for good.)"""

    async def greeted() -> bool:
        _, writer, line = await _open(guarded.starttls)
        await _close(writer)
        return line.startswith(b"220")

    await eventually(greeted, within=20, what="the address to be served")
    held = []
    for _ in range(PER_ADDRESS):
        reader, writer, greeting = await _open(guarded.starttls)
        assert greeting.startswith(b"220"), greeting
        assert (await _command(reader, writer, b"EHLO mfp")).startswith(b"250 ")
        assert (await _command(reader, writer, b"STARTTLS")).startswith(b"220")
        held.append((reader, writer))
    _, writer, full = await _open(guarded.starttls)
    await _close(writer)
    assert full.startswith(b"421"), full
    for reader, writer in held:
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 20)  # until the listener ends it
        await _close(writer)
    await eventually(greeted, within=10, what="the address served again")
