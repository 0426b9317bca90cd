"""What a device sends over SMTP, and the TLS context that trusts the local CA."""

from __future__ import annotations

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
