"""Microsoft Graph as the mail transport: the MIME message the SMTP path builds.

- Within Graph's 4 MB request limit: `sendMail` with the MIME base64-encoded (`text/plain`).
- Larger: the message without its attachments as a draft (MIME), each attachment added to
  it (in one request when that request, the attachment base64-encoded in JSON, is within
  4 MB; otherwise through an upload session, in byte ranges of at most 4 MB PUT to the
  session's pre-authenticated URL, without the token), then `send`. Graph's documents put
  the switch at 3 MB, where the one request is already a few hundred bytes over 4 MB; the
  upload session takes files from 2 MiB (integrators' report), so no size falls between.
- After a crash between Graph's 202 and the delivery ledger's record, a redelivered job is
  looked up in Sent Items by its Internet Message-ID (fleetmail's, stable per job) before it
  is sent again (`sent`): Graph's `sendMail` answers 202 with nothing to record.
- A draft that is not sent (an upload, the send or the connection failed) is deleted, best
  effort. An answer before the send that cannot be read is a failure to retry.

Answers are classified by status and Graph's error code: 401 → the token is refreshed once
(`TokenRejected`); 429 → the job waits its Retry-After in the queue (`MustWait`); 5xx →
retry; 403 access denied, mailbox not enabled for REST, send-as denied → a setting to fix,
with the remedy in the alert.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
from fleetmail_contracts.mail_events import FailureReason

from ..domain.mime import AttachmentSource, MimeMessage
from ..errors import ApiPermanent, ApiTransient, DeliveryError, QuotaExceeded
from ..ports import Credentials, SendResult
from .mail_api import (
    RETRY_AFTER_MAX_S,
    ApiClient,
    common_error,
    field_of,
    json_object_of,
    pieces,
    with_bcc,
)

log = logging.getLogger("mail-service")

REQUEST_LIMIT = 4 * 1024 * 1024
"""A Graph request body (sendMail's MIME, a draft, an attachment, an upload range)."""
UPLOAD_RANGE = 320 * 1024 * 12
"""3.75 MiB: Graph asks for ranges in multiples of 320 KiB, each request at most 4 MB."""

ACCESS_DENIED_REMEDY = (
    "Graph refused access to the mailbox: the app needs the permission Mail.Send (and Mail.ReadWrite "
    "for messages over 4 MB) with consent — delegated: the administrator signs in again ([Acquire]) "
    "after the tenant's transport is graph; app-only: an administrator grants the application "
    "permissions (Entra admin center → App registrations → the app → API permissions → Microsoft "
    "Graph → Grant admin consent) and lets the app use this mailbox (RBAC for Applications or the "
    "application access policy)."
)
REST_REMEDY = (
    "The mailbox is not enabled for Graph (MailboxNotEnabledForRESTAPI): it is on-premises, "
    "inactive or soft-deleted. Send from an Exchange Online mailbox, or set the tenant's transport "
    "to smtp."
)
SEND_AS_REMEDY = (
    "The mailbox may not send as this From address: send From the signed-in mailbox, or grant it "
    "Send As for the address (Exchange admin center → the mailbox → Delegation → Send as)."
)
PERMANENT: dict[str, tuple[FailureReason, str | None]] = {
    "ErrorAccessDenied": (FailureReason.CONFIGURATION_ERROR, ACCESS_DENIED_REMEDY),
    "MailboxNotEnabledForRESTAPI": (FailureReason.CONFIGURATION_ERROR, REST_REMEDY),
    "ErrorSendAsDenied": (FailureReason.SEND_AS_DENIED, SEND_AS_REMEDY),
    "ErrorMessageSizeExceeded": (FailureReason.MESSAGE_TOO_LARGE, None),
    "RequestEntityTooLarge": (FailureReason.MESSAGE_TOO_LARGE, None),
    "ErrorQuotaExceeded": (
        FailureReason.MAILBOX_FULL,
        "The sending mailbox is full: empty its Sent Items or Deleted Items, or raise its quota.",
    ),
}
TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}
GRAPH = "Microsoft Graph"
QUOTA_REMEDY = "The mailbox sent to 10,000 recipients in 24 hours: jobs wait until the window allows."


def error_of(
    response: httpx.Response, now: datetime, max_retry_after_s: float = RETRY_AFTER_MAX_S
) -> DeliveryError:
    """The mail-service error for a Graph answer that is not a success."""
    try:
        error = response.json().get("error") or {}
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        code, message = "", response.text[:200]
    reply = f"{response.status_code} {code}: {message}".strip()
    if (common := common_error(response, reply, now, max_retry_after_s)) is not None:
        return common
    if code == "ErrorSubmissionQuotaExceeded":
        return QuotaExceeded(reply, QUOTA_REMEDY)
    reason, remedy = PERMANENT.get(code, (FailureReason.SMTP_REJECTED, None))
    if response.status_code == 413:
        reason = FailureReason.MESSAGE_TOO_LARGE
    return ApiPermanent(f"Microsoft Graph refused the message: {reply}", reason, remedy, reply)


def json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def inline_size(attachment: dict[str, str], size: int) -> int:
    """The bytes of the one request that adds a file of `size` bytes to a draft, its
    `contentBytes` still empty in `attachment`."""
    return len(json_bytes(attachment)) + 4 * -(-size // 3)


class GraphDelivery:
    """Sends through Microsoft Graph as `credentials.address` (delegated or app-only alike:
    the mailbox is named, not `/me`)."""

    def __init__(
        self,
        base_url: str,
        ca_bundle: Path | None,
        timeout_s: float,
        clock: Callable[[], datetime],
        upload_hosts: tuple[str, ...] = (),
        retry_after_max_s: float = RETRY_AFTER_MAX_S,
    ) -> None:
        self.api = ApiClient(base_url, ca_bundle, timeout_s, clock, retry_after_max_s)
        # Upload URLs come from Graph's answer (outlook.office.com for the real one): only
        # hosts the operator expects are ever sent a message's bytes.
        self.upload_hosts = {h.lower() for h in upload_hosts}
        graph = urlsplit(base_url)
        self.graph_origin = ((graph.hostname or "").lower(), graph.port or 443)

    async def close(self) -> None:
        await self.api.close()

    def _mailbox(self, address: str) -> str:
        return f"{self.api.base_url}/v1.0/users/{quote(address, safe='@')}"

    async def _call(
        self,
        method: str,
        url: str,
        token: str,
        *,
        content: bytes | None = None,
        json: object = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        response = await self.api.request(method, url, headers=headers, content=content, json=json)
        if response.status_code >= 300:
            raise error_of(response, self.api.clock(), self.api.retry_after_max_s)
        return response

    async def send(
        self, server: object, credentials: Credentials, message: MimeMessage, recipients: list[str]
    ) -> SendResult:
        assert credentials.access_token is not None, "Graph takes OAuth 2.0 tokens only"
        token, mailbox = credentials.access_token, self._mailbox(credentials.address)
        mime = with_bcc(message, recipients)
        if 4 * -(-mime.size() // 3) <= REQUEST_LIMIT:
            body = base64.b64encode(await mime.to_bytes())
            await self._call("POST", f"{mailbox}/sendMail", token, content=body, headers=TEXT)
            return SendResult("202 Accepted (Microsoft Graph sendMail)", {})
        bare = base64.b64encode(await replace(mime, attachments=()).to_bytes())
        created = await self._call("POST", f"{mailbox}/messages", token, content=bare, headers=TEXT)
        draft_url = f"{mailbox}/messages/{quote(field_of(created, 'id', GRAPH), safe='')}"
        try:
            for attachment in mime.attachments:
                await self._attach(draft_url, token, attachment)
            await self._call("POST", f"{draft_url}/send", token)
        except Exception:
            await self._discard(draft_url, token)
            raise
        return SendResult(
            f"202 Accepted (Microsoft Graph draft {len(mime.attachments)} attachments, send)", {}
        )

    async def _discard(self, draft_url: str, token: str) -> None:
        """Deletes a draft that was not sent, best effort: a message's documents are not left
        in the mailbox's Drafts. A draft Graph did send has moved to Sent Items under another
        id, so this never removes a sent message."""
        try:
            response = await self.api.request(
                "DELETE", draft_url, headers={"Authorization": f"Bearer {token}"}
            )
        except ApiTransient as exc:
            log.warning("a Graph draft that was not sent could not be deleted: %s", exc)
            return
        if response.status_code >= 300 and response.status_code != 404:
            log.warning("a Graph draft that was not sent could not be deleted: %d", response.status_code)

    async def _attach(self, draft_url: str, token: str, attachment: AttachmentSource) -> None:
        small: dict[str, str] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": attachment.filename,
            "contentType": attachment.content_type,
            "contentBytes": "",
        }
        if inline_size(small, attachment.size) <= REQUEST_LIMIT:
            data = b"".join([chunk async for chunk in attachment.open()])
            small["contentBytes"] = base64.b64encode(data).decode()
            body = json_bytes(small)
            await self._call("POST", f"{draft_url}/attachments", token, content=body, headers=JSON)
            return
        item: dict[str, object] = {
            "AttachmentItem": {
                "attachmentType": "file",
                "name": attachment.filename,
                "size": attachment.size,
                "contentType": attachment.content_type,
            }
        }
        session = await self._call("POST", f"{draft_url}/attachments/createUploadSession", token, json=item)
        upload_url = field_of(session, "uploadUrl", GRAPH)
        if not self._may_upload_to(upload_url):
            raise ApiPermanent(
                "Microsoft Graph named an upload URL on a host this deployment does not send to",
                FailureReason.CONFIGURATION_ERROR,
                "Add the host to FLEETMAIL_MAIL_GRAPH_UPLOAD_HOSTS if it is Microsoft's.",
            )
        start = 0
        async for piece in pieces(attachment.open(), UPLOAD_RANGE):
            end = start + len(piece) - 1
            # The upload URL is pre-authenticated: Graph's token would be refused there.
            response = await self.api.request(
                "PUT",
                upload_url,
                content=piece,
                headers={"Content-Range": f"bytes {start}-{end}/{attachment.size}"},
            )
            if response.status_code >= 300:
                raise error_of(response, self.api.clock(), self.api.retry_after_max_s)
            start = end + 1

    def _may_upload_to(self, url: str) -> bool:
        """An upload URL over https, on Graph's own host and port or on an allowed upload host
        at the default port: a message's bytes go nowhere else."""
        try:
            parts = urlsplit(url)
            where = ((parts.hostname or "").lower(), parts.port or 443)
        except ValueError:
            return False
        return parts.scheme == "https" and (
            where == self.graph_origin or (where[0] in self.upload_hosts and where[1] == 443)
        )

    async def sent(self, credentials: Credentials, internet_message_id: str) -> bool:
        """Whether Sent Items holds the message (sent before a crash). A grant without read
        access cannot tell: False, and the message is sent again."""
        assert credentials.access_token is not None
        quoted = internet_message_id.replace("'", "''")
        response = await self.api.request(
            "GET",
            f"{self._mailbox(credentials.address)}/mailFolders/SentItems/messages",
            params={"$filter": f"internetMessageId eq '{quoted}'", "$select": "id"},
            headers={"Authorization": f"Bearer {credentials.access_token}"},
        )
        if response.status_code == 403:
            log.warning(
                "Sent Items of %s cannot be read (no Mail.Read): a crash may resend", credentials.address
            )
            return False
        if response.status_code >= 300:
            raise error_of(response, self.api.clock(), self.api.retry_after_max_s)
        found = (json_object_of(response) or {}).get("value")
        if not isinstance(found, list):
            reply = f"{response.status_code} without a readable value"
            raise ApiTransient(f"{GRAPH} answered the Sent Items lookup {reply}", reply)
        return bool(found)
