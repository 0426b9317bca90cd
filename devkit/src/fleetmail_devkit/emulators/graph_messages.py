"""Microsoft Graph's message shapes, as the Graph emulator reads them: a JSON `message`
resource or base64 MIME turned into the MIME message a recipient would see, drafts, and the
upload sessions that attach large files to them. Errors carry Graph's codes."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from typing import Any

from .smtp import attachments_of

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A Graph request body: 4 MB (larger attachments go through an upload session)."""
MAX_UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024
"""One PUT of an upload session: up to 4 MB."""
MIN_UPLOAD_SESSION_BYTES = 2 * 1024 * 1024
"""The smallest file an upload session takes (Graph's documents say 3 MB; integrators report
exactly 2 MiB, and between the two a file fits neither way in any other request)."""
MAX_UPLOAD_SESSION_BYTES = 150 * 1024 * 1024
UPLOAD_SESSION_LIFETIME_S = 6 * 3600
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class GraphError(Exception):
    """An answer in Graph's error shape: {"error": {"code", "message", "innerError"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


@dataclass
class UploadSession:
    id: str
    draft_id: str
    app_id: str
    auth_token: str
    name: str
    content_type: str
    size: int
    expires_at: float
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Draft:
    id: str
    mailbox: str
    message: EmailMessage
    created_at: float
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    """Files attached after the draft was made (name, content type, bytes)."""

    def to_send(self) -> EmailMessage:
        for name, content_type, data in self.attachments:
            maintype, _, subtype = content_type.partition("/")
            self.message.add_attachment(
                data, maintype=maintype, subtype=subtype or "octet-stream", filename=name
            )
        self.attachments = []
        return self.message


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(recipient: Any) -> str:
    try:
        email = recipient["emailAddress"]
        address = str(email["address"])
    except (KeyError, TypeError) as exc:
        raise bad_request("At least one recipient is not valid.", "ErrorInvalidRecipients") from exc
    name = email.get("name")
    return formataddr((str(name), address)) if name else address


def from_json(body: dict[str, Any], mailbox: str) -> EmailMessage:
    """A `message` resource as the MIME message Exchange would send."""
    message = EmailMessage()
    sender = body.get("from")
    message["From"] = _address(sender) if sender else mailbox
    for key, header in (
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", "Bcc"),
        ("replyTo", "Reply-To"),
    ):
        addresses = [_address(r) for r in body.get(key) or []]
        if addresses:
            message[header] = ", ".join(addresses)
    message["Subject"] = str(body.get("subject") or "")
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = str(body.get("internetMessageId") or make_msgid(domain=_domain(mailbox)))
    for header in body.get("internetMessageHeaders") or []:
        name = str(header.get("name", ""))
        if not name.lower().startswith("x-"):
            raise bad_request(
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
                "InvalidInternetMessageHeader",
            )
        message[name] = str(header.get("value", ""))
    content = body.get("body") or {}
    html = str(content.get("contentType", "text")).lower() == "html"
    message.set_content(str(content.get("content", "")), subtype="html" if html else "plain")
    for attachment in body.get("attachments") or []:
        name, content_type, data = file_attachment(attachment)
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=name)
    return message


def file_attachment(attachment: Any) -> tuple[str, str, bytes]:
    """(name, content type, bytes) of a `fileAttachment` resource."""
    if not isinstance(attachment, dict) or attachment.get("@odata.type") != "#microsoft.graph.fileAttachment":
        raise bad_request("Only #microsoft.graph.fileAttachment is supported here.", "ErrorInvalidRequest")
    try:
        data = base64.b64decode(str(attachment["contentBytes"]), validate=True)
    except (KeyError, binascii.Error) as exc:
        raise bad_request(
            "The attachment's contentBytes is not valid base64.", "ErrorInvalidRequest"
        ) from exc
    return (
        str(attachment.get("name") or "attachment"),
        str(attachment.get("contentType") or "application/octet-stream"),
        data,
    )


def from_mime(body: bytes, mailbox: str) -> EmailMessage:
    """The MIME form: the message base64-encoded, sent as text/plain."""
    try:
        raw = base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error as exc:
        raise bad_request(
            "Invalid base64 string for MIME content.", "ErrorMimeContentInvalidBase64String"
        ) from exc
    message = message_from_bytes(raw, policy=policy.default)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise bad_request("Invalid base64 string for MIME content.", "ErrorMimeContentInvalidBase64String")
    if message["From"] is None:
        message["From"] = mailbox
    if message["Message-ID"] is None:
        message["Message-ID"] = make_msgid(domain=_domain(mailbox))
    return message


def recipients_of(message: EmailMessage) -> list[str]:
    headers = [str(v) for h in ("To", "Cc", "Bcc") for v in message.get_all(h, [])]
    return [address for _, address in getaddresses(headers) if address]


def as_delivered(message: EmailMessage) -> bytes:
    """The bytes recipients get: no Bcc header, CRLF line ends."""
    del message["Bcc"]
    # The SMTP policy's generator takes a second longer over a 35 MB message than this.
    raw: bytes = message.as_bytes(policy=policy.default).replace(b"\n", b"\r\n")
    return raw


def rendered(message: EmailMessage) -> tuple[bytes, list[dict[str, Any]]]:
    """The bytes recipients get and their attachments: seconds of work for a large message."""
    return as_delivered(message), attachments_of(message)


def from_addresses(message: EmailMessage) -> list[str]:
    return [a.lower() for _, a in getaddresses([str(message.get("From", ""))]) if a]


def content_range(header: str | None, session: UploadSession, received: int) -> tuple[int, int]:
    """(first, last) byte of a PUT, checked as Outlook checks it: the next expected byte on,
    within the file, as long as the body, at most 4 MB."""
    match = CONTENT_RANGE.match(header or "")
    if match is None:
        raise bad_request("The Content-Range header is missing or malformed.", "ErrorInvalidRequest")
    first, last, total = (int(g) for g in match.groups())
    if total != session.size:
        raise bad_request(
            f"The total size {total} is not the session's {session.size}.", "ErrorInvalidRequest"
        )
    if first != len(session.data) or last < first or last >= total:
        raise bad_request(
            f"The range {first}-{last} is not the next expected range ({len(session.data)}-).",
            "ErrorInvalidRequest",
        )
    if last - first + 1 != received:
        raise bad_request("The Content-Range does not match the body's length.", "ErrorInvalidRequest")
    if received > MAX_UPLOAD_CHUNK_BYTES:
        raise GraphError(413, "RequestEntityTooLarge", "A byte range may be at most 4 MB.")
    return first, last


def draft_resource(draft: Draft, base_url: str) -> dict[str, Any]:
    message = draft.message

    def recipients(header: str) -> list[dict[str, Any]]:
        found = getaddresses([str(v) for v in message.get_all(header, [])])
        return [{"emailAddress": {"name": n or a, "address": a}} for n, a in found if a]

    senders = recipients("From")
    return {
        "@odata.context": f"{base_url}/v1.0/$metadata#users('{draft.mailbox}')/messages/$entity",
        "id": draft.id,
        "createdDateTime": iso(draft.created_at),
        "lastModifiedDateTime": iso(draft.created_at),
        "isDraft": True,
        "subject": str(message.get("Subject", "")),
        "internetMessageId": str(message.get("Message-ID", "")),
        "hasAttachments": bool(draft.attachments) or message.is_multipart(),
        "from": senders[0] if senders else None,
        "toRecipients": recipients("To"),
        "ccRecipients": recipients("Cc"),
        "bccRecipients": recipients("Bcc"),
    }


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "emulator.outlook.com"
