"""The Gmail API as the mail transport: `users.messages.send` with the MIME message the SMTP
path builds, as a media upload (`message/rfc822`); a large message as a resumable upload in
chunks of a multiple of 256 KiB (Gmail takes up to 35 MB).

Gmail answers a send with the message's id, which goes into the sent event's reply. After a
crash between Gmail's answer and the delivery ledger's record, a redelivered job is searched
for by its Internet Message-ID (`users.messages.list?q=rfc822msgid:…`, `sent`) before it is
sent again — when the token may search: `gmail.readonly`, `gmail.modify` or
`https://mail.google.com/`. With `gmail.send` alone (or `gmail.metadata`, which Gmail refuses
a query) it cannot, and the job is sent again: the same window as SMTP's after the server's
250. Once Gmail accepted a send, its answer can no longer fail the job: one that names no id
is logged and the job is delivered with the id unknown.

Answers are classified by status and Google's `errors[0].reason`: 401 → the token is
refreshed once; 429 / 403 rate limits → the job waits its Retry-After in the queue; the daily
sending limit → the quota wait; 5xx → retry; insufficient scopes, delegation denied, a
service account without a subject → a setting to fix, with the remedy in the alert.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from fleetmail_contracts.mail_events import FailureReason

from ..domain.mime import MimeMessage
from ..errors import ApiPermanent, ApiTransient, DeliveryError, QuotaExceeded
from ..ports import Credentials, SendResult
from .mail_api import RETRY_AFTER_MAX_S, ApiClient, common_error, json_object_of, pieces, throttled, with_bcc

log = logging.getLogger("mail-service")

MEDIA_LIMIT = 5 * 1024 * 1024
"""Messages up to this go in one media upload; larger ones resumable."""
CHUNK = 32 * 256 * 1024
"""8 MiB: resumable chunks but the last are multiples of 256 KiB."""

SCOPE_REMEDY = (
    "The token does not carry https://www.googleapis.com/auth/gmail.send: the administrator signs "
    "in again ([Acquire]) now that the tenant's transport is gmail_api (the sign-in asks for it); "
    "app-only: a Workspace administrator adds the scope to the service account's domain-wide "
    "delegation (Admin console → Security → API controls → Domain-wide delegation)."
)
DELEGATION_REMEDY = (
    "Gmail refused to send as this account with the token given: the token is another account's. "
    "Sign in with the sending address, or set up domain-wide delegation for the service account."
)
PRECONDITION_REMEDY = (
    "A service account's own token cannot send: it acts for a Workspace user through domain-wide "
    "delegation (the sending address as its subject)."
)
SEARCHABLE_ID = re.compile(r"^<[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+>$")
"""A Message-ID Gmail's search reads as one word: any other could match other messages."""
QUOTA_REMEDY = "The account reached Gmail's daily sending limit: jobs wait until the window allows."
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def reason_of(response: httpx.Response) -> tuple[str, str]:
    """Google's `errors[0].reason` and message in an error answer ("" when it names none)."""
    try:
        error = response.json().get("error") or {}
        message = str(error.get("message", ""))
        reasons = [str(e.get("reason", "")) for e in error.get("errors") or ()]
    except (ValueError, AttributeError):
        message, reasons = response.text[:200], []
    return (reasons[0] if reasons else ""), message


def cannot_search(response: httpx.Response) -> bool:
    """Gmail refused a search for the token's scopes: `gmail.send` alone (insufficient
    permissions), or `gmail.metadata`, which takes no query (Gmail says so in words only)."""
    reason, message = reason_of(response)
    return response.status_code == 403 and (
        reason == "insufficientPermissions" or "Metadata scope" in message
    )


def error_of(
    response: httpx.Response, now: datetime, max_retry_after_s: float = RETRY_AFTER_MAX_S
) -> DeliveryError:
    """The mail-service error for a Gmail API answer that is not a success."""
    reason, message = reason_of(response)
    reply = f"{response.status_code} {reason}: {message}".strip()
    if reason == "dailyLimitExceeded" or "(Mail sending)" in message:
        return QuotaExceeded(reply, QUOTA_REMEDY)
    if (common := common_error(response, reply, now, max_retry_after_s)) is not None:
        return common
    if reason in RATE_REASONS:
        return throttled(response, reply, now, max_retry_after_s)
    if response.status_code == 413 or reason == "uploadTooLarge":
        return ApiPermanent(
            f"Gmail refused the message: {reply}", FailureReason.MESSAGE_TOO_LARGE, None, reply
        )
    if reason == "insufficientPermissions":
        remedy: str | None = SCOPE_REMEDY
    elif "Delegation denied" in message:
        remedy = DELEGATION_REMEDY
    elif reason == "failedPrecondition":
        remedy = PRECONDITION_REMEDY
    else:
        return ApiPermanent(f"Gmail refused the message: {reply}", FailureReason.SMTP_REJECTED, None, reply)
    return ApiPermanent(
        f"Gmail refused the message: {reply}", FailureReason.CONFIGURATION_ERROR, remedy, reply
    )


def accepted(response: httpx.Response) -> SendResult:
    """Gmail accepted the message: whatever its answer says, it is delivered (raising now would
    send it a second time); the id goes into the reply when the answer names one."""
    message_id = (json_object_of(response) or {}).get("id")
    if not isinstance(message_id, str) or not message_id:
        log.warning(
            "Gmail accepted a message with an answer that names no message id (%d, %d bytes)",
            response.status_code,
            len(response.content),
        )
        message_id = "unknown (Gmail's answer could not be read)"
    return SendResult(f"{response.status_code} OK Gmail message id {message_id}", {})


class GmailApiDelivery:
    """Sends through the Gmail API as the token's account (`users/me`)."""

    def __init__(
        self,
        base_url: str,
        ca_bundle: Path | None,
        timeout_s: float,
        clock: Callable[[], datetime],
        retry_after_max_s: float = RETRY_AFTER_MAX_S,
    ) -> None:
        self.api = ApiClient(base_url, ca_bundle, timeout_s, clock, retry_after_max_s)
        self.send_url = f"{self.api.base_url}/upload/gmail/v1/users/me/messages/send"
        self.list_url = f"{self.api.base_url}/gmail/v1/users/me/messages"

    async def close(self) -> None:
        await self.api.close()

    async def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 300 and response.status_code != 308:
            raise error_of(response, self.api.clock(), self.api.retry_after_max_s)
        return response

    async def send(
        self, server: object, credentials: Credentials, message: MimeMessage, recipients: list[str]
    ) -> SendResult:
        assert credentials.access_token is not None, "the Gmail API takes OAuth 2.0 tokens only"
        auth = {"Authorization": f"Bearer {credentials.access_token}"}
        mime = with_bcc(message, recipients)
        size = mime.size()
        if size <= MEDIA_LIMIT:
            response = await self._checked(
                await self.api.request(
                    "POST",
                    self.send_url,
                    params={"uploadType": "media"},
                    content=await mime.to_bytes(),
                    headers={**auth, "Content-Type": "message/rfc822"},
                )
            )
            return accepted(response)
        started = await self._checked(
            await self.api.request(
                "POST",
                self.send_url,
                params={"uploadType": "resumable"},
                json={},
                headers={
                    **auth,
                    "X-Upload-Content-Type": "message/rfc822",
                    "X-Upload-Content-Length": str(size),
                },
            )
        )
        session = started.headers.get("Location")
        if not session or not session.startswith(f"{self.api.base_url}/"):
            raise ApiTransient("the Gmail API started no resumable upload on its own host")
        start, response = 0, started
        async for piece in pieces(mime.chunks(), CHUNK):
            end = start + len(piece) - 1
            response = await self._checked(
                await self.api.request(
                    "PUT",
                    session,
                    content=piece,
                    headers={**auth, "Content-Range": f"bytes {start}-{end}/{size}"},
                )
            )
            start = end + 1
        if response.status_code != 200:
            raise ApiTransient(f"the Gmail API did not finish the upload: {response.status_code}")
        return accepted(response)

    async def sent(self, credentials: Credentials, internet_message_id: str) -> bool | None:
        """Whether the account's mail holds the message (sent before a crash; in the trash
        too: it was sent all the same). None when Gmail cannot tell: the token may not search
        (`gmail.send` alone), or the id is not one search word."""
        assert credentials.access_token is not None, "the Gmail API takes OAuth 2.0 tokens only"
        if SEARCHABLE_ID.match(internet_message_id) is None:
            return None
        response = await self.api.request(
            "GET",
            self.list_url,
            params={
                "q": f"rfc822msgid:{internet_message_id[1:-1]}",
                "includeSpamTrash": "true",
                "maxResults": "1",
            },
            headers={"Authorization": f"Bearer {credentials.access_token}"},
        )
        if cannot_search(response):
            return None
        if response.status_code >= 300:
            raise error_of(response, self.api.clock(), self.api.retry_after_max_s)
        answer = json_object_of(response)
        found = answer.get("messages", []) if answer is not None else None
        if not isinstance(found, list):
            reply = f"{response.status_code} without a readable message list"
            raise ApiTransient(f"the Gmail API answered the search for a sent message {reply}", reply)
        return bool(found)
