"""What a device sends over SMTP, and the TLS context that trusts the local CA."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import uuid
from email.message import EmailMessage


def scan(
    subject: str = "Scan from an old MFP", size: int = 2048, document: bytes | None = None
) -> EmailMessage:
    """A scanner's message with one PDF attached: `document`, or a PDF header and `size` zeros."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "mfp@contoso.example",
        "boss@fabrikam.example",
        subject,
    )
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mfp>"
    message.set_content("Please find the scan attached.")
    message.add_attachment(
        document if document is not None else b"%PDF-1.4 " + b"\0" * size,
        maintype="application",
        subtype="pdf",
        filename="scan.pdf",
    )
    return message


def context(stack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(stack.ca_file))


async def send_raw(port: int, device_id: str, secret: str, data: bytes, end: bytes = b".\r\n") -> str:
    """A device's message as exactly these bytes (smtplib and aiosmtplib would mend bare LFs
    and dots): EHLO, AUTH PLAIN, one recipient, DATA, `data` (a line end added if it has none) then `end`; the reply to it.
    On a port without TLS (the LAN port)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> str:
        lines = []
        while (line := await reader.readline()) and line[3:4] == b"-":
            lines.append(line)
        return (line or b"(closed)").decode(errors="replace").strip()

    async def command(text: str) -> str:
        writer.write(text.encode() + b"\r\n")
        return await reply()

    try:
        await reply()
        await command("EHLO old-mfp")
        credentials = base64.b64encode(f"\0{device_id}\0{secret}".encode()).decode()
        for step in (
            f"AUTH PLAIN {credentials}",
            "MAIL FROM:<mfp@contoso.example>",
            "RCPT TO:<boss@fabrikam.example>",
        ):
            answer = await command(step)
            assert answer[:1] == "2", (step.split()[0], answer)
        answer = await command("DATA")
        assert answer.startswith("354"), answer
        stuffed = b"\n".join(b"." + line if line.startswith(b".") else line for line in data.split(b"\n"))
        writer.write(stuffed + (b"" if stuffed.endswith(b"\n") else b"\r\n") + end)
        return await reply()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
