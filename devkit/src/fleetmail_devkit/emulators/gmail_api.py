"""The Gmail API's sending part, as the Gmail API emulator serves it (the Gmail SMTP
emulator's process, `--api-port`, HTTPS).

- `POST /gmail/v1/users/{userId}/messages/send` with `{"raw": base64url}`;
  `POST /upload/gmail/v1/users/{userId}/messages/send?uploadType=media|multipart|resumable`
  (resumable: the session URI in `Location`, then PUT the message whole or in chunks of
  256 KiB multiples with `Content-Range`; `308 Resume Incomplete` with `Range` until the
  last). At most 35 MB.
- `GET /gmail/v1/users/{userId}/messages?q=rfc822msgid:<id>` and `…/messages/{id}`: the
  sent message, found again after a crash.
- The token through Google's tokeninfo (401 authError otherwise); `userId` is `me` or the
  token's own address (403 "Delegation denied"); scope `gmail.send`, `gmail.compose`,
  `gmail.modify` or `https://mail.google.com/` to send, a read scope to look (403
  insufficientPermissions, ACCESS_TOKEN_SCOPE_INSUFFICIENT). A service account's own token
  (no domain-wide delegation subject): 400 failedPrecondition.
- A From that is not the account's or a "Send mail as" alias is rewritten as Gmail's SMTP
  server does; the daily sending limit is the Gmail SMTP emulator's count of the same
  mailbox on the same clock (429 "User-rate limit exceeded … (Mail sending)"); the per-user
  rate in quota units (a send is 100 of 15,000 a minute; 429 rateLimitExceeded, Retry-After).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .graph_messages import iso
from .mail_api import SentMessage, done, garbled, over_budget
from .smtp import EmulatorState, TokenVerifier, attachments_of, gmail_rewritten
from .smtp_limits import DAY_S, over_daily

MAIL = "https://mail.google.com/"
SCOPE = "https://www.googleapis.com/auth/gmail."
SEND_SCOPES = frozenset({MAIL, SCOPE + "send", SCOPE + "compose", SCOPE + "modify"})
READ_SCOPES = frozenset({MAIL, SCOPE + "modify", SCOPE + "readonly"})
METADATA_SCOPE = SCOPE + "metadata"
MAX_MESSAGE_BYTES = 35 * 1024 * 1024
CHUNK_BYTES = 256 * 1024
COST = {"send": 100, "get": 5, "list": 5}
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
RFC822MSGID = re.compile(r"^rfc822msgid:<?([^<>\s]+)>?$")


class GmailError(Exception):
    """An answer in Google's error shape: {"error": {"code", "message", "errors": [{"domain",
    "reason", "message"}], "status"}}."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        domain: str = "global",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message, self.domain = code, reason, message, domain
        self.headers, self.extra = headers or {}, extra

    def body(self) -> dict[str, Any]:
        first = {
            "message": self.extra.pop("error_message", self.message),
            "domain": self.domain,
            "reason": self.reason,
        }
        first.update(self.extra.pop("location", {}))
        error = {
            "code": self.code,
            "message": self.message,
            "errors": [first],
            "status": STATUS.get(self.code, "UNKNOWN"),
        }
        return {"error": {**error, **self.extra}}


def insufficient_scope(method: str) -> GmailError:
    return GmailError(
        403,
        "insufficientPermissions",
        "Request had insufficient authentication scopes.",
        headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="insufficient_scope"'
        },
        error_message="Insufficient Permission",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "gmail.googleapis.com",
                    "method": f"caribou.api.proto.MailboxService.{method}",
                },
            }
        ],
    )


def invalid_argument(message: str) -> GmailError:
    return GmailError(400, "invalidArgument", message)


@dataclass(frozen=True)
class Caller:
    user: str
    app: str
    scopes: frozenset[str]
    token_sha256: str


@dataclass
class Resumable:
    caller: Caller
    user_id: str
    total: int | None
    data: bytearray = field(default_factory=bytearray)


def create_app(state: EmulatorState, verifier: TokenVerifier, base_url: str, port: int) -> FastAPI:
    api = FastAPI(title="Gmail API emulator", docs_url=None, redoc_url=None)
    uploads: dict[str, Resumable] = {}

    @api.exception_handler(GmailError)
    async def gmail_error(request: Request, exc: GmailError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.code, headers=exc.headers)

    async def caller_of(request: Request, user_id: str) -> Caller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        info = await verifier.google_info(token) if scheme.lower() == "bearer" and token else None
        if info is None:
            raise GmailError(
                401,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
                },
                error_message="Invalid Credentials",
                location={"location": "Authorization", "locationType": "header"},
            )
        user = str(info.get("email", "")).lower()
        if user_id != "me" and user_id.lower() != user:
            raise GmailError(403, "forbidden", f"Delegation denied for {user}")
        if user.endswith(".gserviceaccount.com"):
            raise GmailError(400, "failedPrecondition", "Precondition check failed.")
        digest = hashlib.sha256(token.encode()).hexdigest()
        return Caller(user, str(info.get("azp", "")), frozenset(str(info.get("scope", "")).split()), digest)

    @asynccontextmanager
    async def call(request: Request, user_id: str, method: str) -> AsyncIterator[Caller]:
        caller = await caller_of(request, user_id)
        allowed = SEND_SCOPES if method == "send" else READ_SCOPES | {METADATA_SCOPE}
        if not caller.scopes & allowed:
            raise insufficient_scope({"send": "SendMessage", "get": "GetMessage"}.get(method, "ListMessages"))
        if (fault := state.take_fault("api", caller.user)) is not None:
            retry = {"Retry-After": "1"} if fault.code in (429, 503) else None
            raise GmailError(
                fault.code,
                "backendError" if fault.code >= 500 else "rateLimitExceeded",
                fault.text,
                headers=retry,
            )
        over = over_budget(state, caller.app, caller.user, COST[method])
        if over is not None:
            raise GmailError(
                429, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits", {"Retry-After": str(over[1])}
            )
        try:
            await state.api.wait_if_held(caller.user)
            yield caller
        finally:
            done(state, caller.app, caller.user)

    def answered(user: str, sent: dict[str, Any]) -> Response:
        """The sent message's resource, or (fault stage `answer`) an answer the client cannot
        read although Gmail accepted the message."""
        if (fault := state.take_fault("answer", user)) is not None:
            return garbled(fault)
        return JSONResponse(sent)

    def too_large(size: int) -> GmailError | None:
        if size <= MAX_MESSAGE_BYTES:
            return None
        return GmailError(
            413, "uploadTooLarge", f"Media larger than the maximum size of {MAX_MESSAGE_BYTES} bytes."
        )

    async def send(caller: Caller, raw: bytes) -> dict[str, Any]:
        if (refusal := too_large(len(raw))) is not None:
            raise refusal
        box = state.mailbox_of(caller.user)
        allowed = {caller.user} | (box.send_as if box else set())
        raw, message, recipients, attachments = await asyncio.to_thread(prepared, raw, caller.user, allowed)
        if not recipients:
            raise invalid_argument("Recipient address required")
        limits, usage, now = state.limits_of(caller.user), state.usage_of(caller.user), state.clock.now()
        if over_daily(limits, usage, now, len(recipients)) is not None:
            until = usage.sent[0][0] + DAY_S if usage.sent else now + DAY_S
            text = f"User-rate limit exceeded.  Retry after {iso(until)} (Mail sending)"
            raise GmailError(429, "rateLimitExceeded", text, "usageLimits")
        usage.sent.append((now, 1))
        delivered = state.deliver(
            raw,
            caller.user,
            recipients,
            caller.user,
            "GMAIL_API",
            caller.token_sha256,
            port,
            message,
            attachments,
        )
        gmail_id = secrets.token_hex(8)
        state.api.sent.append(
            SentMessage(
                gmail_id, caller.user, delivered.message_id or "", delivered.subject or "", now, delivered.id
            )
        )
        return {"id": gmail_id, "threadId": gmail_id, "labelIds": ["SENT"]}

    @api.post("/gmail/v1/users/{user_id}/messages/send")
    async def send_json(user_id: str, request: Request) -> Response:
        async with call(request, user_id, "send") as caller:
            try:
                body = json.loads(await request.body())
                raw = str(body["raw"]) if isinstance(body, dict) and body.get("raw") else None
            except ValueError as exc:
                raise invalid_argument("Invalid JSON payload received.") from exc
            if raw is None:
                raise invalid_argument(
                    "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
                )
            try:
                message = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            except (binascii.Error, ValueError) as exc:
                raise invalid_argument("Invalid value for ByteString: raw") from exc
            return answered(caller.user, await send(caller, message))

    @api.post("/upload/gmail/v1/users/{user_id}/messages/send")
    async def upload(user_id: str, request: Request) -> Response:
        upload_type = request.query_params.get("uploadType")
        if upload_type not in ("media", "multipart", "resumable"):
            raise invalid_argument(
                "Upload requests must include an uploadType URL parameter and a URL path beginning with /upload/"
            )
        declared = int(
            request.headers.get("x-upload-content-length") or request.headers.get("content-length") or 0
        )
        async with call(request, user_id, "send") as caller:
            if upload_type == "resumable":
                if (
                    refusal := too_large(int(request.headers.get("x-upload-content-length") or 0))
                ) is not None:
                    raise refusal
                media_type = request.headers.get("x-upload-content-type", "message/rfc822")
                if not media_type.startswith("message/"):
                    raise invalid_argument(
                        f"Media type '{media_type}' is not supported. Valid media types: [message/*]"
                    )
                upload_id = secrets.token_urlsafe(48)
                total = request.headers.get("x-upload-content-length")
                uploads[upload_id] = Resumable(caller, user_id, int(total) if total else None)
                location = f"{base_url}/upload/gmail/v1/users/{user_id}/messages/send?uploadType=resumable&upload_id={upload_id}"
                return Response(
                    status_code=200, headers={"Location": location, "X-GUploader-UploadID": upload_id}
                )
            if (refusal := too_large(declared)) is not None:
                raise refusal
            body = await request.body()
            if upload_type == "multipart":
                body = message_part(request.headers.get("content-type", ""), body)
            return answered(caller.user, await send(caller, body))

    @api.put("/upload/gmail/v1/users/{user_id}/messages/send")
    async def resume(user_id: str, request: Request) -> Response:
        """A chunk of a resumable upload (or, with `bytes */total`, a question: how much is in?)."""
        session = uploads.get(request.query_params.get("upload_id", ""))
        if session is None or session.user_id != user_id:
            raise GmailError(404, "notFound", "Requested entity was not found.")
        body = await request.body()
        first, last, total = chunk_range(request.headers.get("content-range"), len(body), session)
        if (refusal := too_large(total or 0)) is not None:
            raise refusal
        if first is not None and first != len(session.data):
            raise GmailError(
                400,
                "badRequest",
                f"Invalid request. The received range starts at {first}, not {len(session.data)}.",
            )
        final = total is not None and last is not None and last + 1 == total
        if not final and body and len(body) < CHUNK_BYTES:
            raise GmailError(
                400,
                "badRequest",
                f"Invalid request.  The number of bytes uploaded is required to be equal or greater than "
                f"{CHUNK_BYTES}, except for the final request (it's recommended to be the exact multiple of "
                f"{CHUNK_BYTES}).  The received request contained {len(body)} bytes, which does not meet this "
                "requirement.",
            )
        if final:
            session.data.extend(body)
            del uploads[request.query_params["upload_id"]]
            return answered(session.caller.user, await send(session.caller, bytes(session.data)))
        # What is not a whole number of 256 KiB is not kept: the client resumes from `Range`.
        session.data.extend(body[: len(body) - len(body) % CHUNK_BYTES])
        headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
        return Response(
            status_code=308, headers={**headers, "X-GUploader-UploadID": request.query_params["upload_id"]}
        )

    @api.get("/gmail/v1/users/{user_id}/messages")
    async def list_messages(user_id: str, request: Request, q: str | None = None) -> Response:
        async with call(request, user_id, "list") as caller:
            if q is not None and not caller.scopes & READ_SCOPES:
                raise GmailError(403, "forbidden", "Metadata scope does not support 'q' parameter")
            wanted = None
            if q:
                match = RFC822MSGID.match(q.strip())
                if match is None:
                    raise invalid_argument(f"The emulator searches by rfc822msgid: only, not {q!r}")
                wanted = f"<{match.group(1)}>"
            found = [m for m in state.api.sent_by(caller.user) if wanted in (None, m.internet_message_id)]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if found:
            body["messages"] = [{"id": m.id, "threadId": m.id} for m in reversed(found)]
        return JSONResponse(body)

    @api.get("/gmail/v1/users/{user_id}/messages/{message_id}")
    async def get_message(user_id: str, message_id: str, request: Request, format: str = "full") -> Response:
        async with call(request, user_id, "get") as caller:
            if format not in ("minimal", "metadata") and not caller.scopes & READ_SCOPES:
                raise GmailError(403, "forbidden", f"Metadata scope doesn't allow format {format.upper()}")
            sent = next((m for m in state.api.sent_by(caller.user) if m.id == message_id), None)
            if sent is None:
                raise GmailError(404, "notFound", "Requested entity was not found.")
        raw = state.maildir.get_bytes(sent.delivery_id)
        body: dict[str, Any] = {
            "id": sent.id,
            "threadId": sent.id,
            "labelIds": ["SENT"],
            "sizeEstimate": len(raw),
            "internalDate": str(int(sent.sent_at * 1000)),
        }
        if format == "raw":
            body["raw"] = base64.urlsafe_b64encode(raw).decode()
        elif format != "minimal":
            parsed = message_from_bytes(raw, policy=policy.default)
            body["payload"] = {
                "mimeType": parsed.get_content_type(),
                "headers": [{"name": k, "value": str(v)} for k, v in parsed.items()],
            }
        return JSONResponse(body)

    return api


def prepared(
    raw: bytes, account: str, allowed: set[str]
) -> tuple[bytes, EmailMessage, list[str], list[dict[str, Any]]]:
    """The message as Gmail sends it (a Message-ID, no Bcc, a From the account may use), its
    recipients and attachments: seconds of work for a large message, done off the event loop."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    headers = [str(v) for h in ("To", "Cc", "Bcc") for v in message.get_all(h, [])]
    recipients = [a for _, a in getaddresses(headers) if a]
    changed = message["Bcc"] is not None or message["Message-ID"] is None
    if message["Message-ID"] is None:
        message["Message-ID"] = make_msgid(domain="mail.gmail.com")
    del message["Bcc"]
    senders = [a.lower() for _, a in getaddresses([str(message.get("From", ""))]) if a]
    if not senders:
        message["From"], changed = account, True
    elif any(a not in allowed for a in senders):
        raw, changed = gmail_rewritten(message, account), False
    if changed:
        raw = message.as_bytes(policy=policy.default).replace(b"\n", b"\r\n")
    return raw, message, recipients, attachments_of(message)


def message_part(content_type: str, body: bytes) -> bytes:
    """The message of a multipart/related upload: its second part (the first is metadata)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise invalid_argument("Invalid multipart request with 0 mime parts.")
    delimiter = b"--" + match.group(1).encode()
    parts = [p for p in body.split(delimiter)[1:] if not p.startswith(b"--")]
    if len(parts) != 2:
        raise invalid_argument(f"Invalid multipart request with {len(parts)} mime parts.")
    _, _, content = parts[1].partition(b"\r\n\r\n")
    return content[:-2] if content.endswith(b"\r\n") else content


def chunk_range(
    header: str | None, length: int, session: Resumable
) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a PUT: `bytes a-b/total`, `bytes a-b/*`, `bytes */total`;
    none: the whole message in this one request."""
    if header is None:
        return (0, length - 1, length) if length else (None, None, session.total)
    match = re.match(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$", header.strip())
    if match is None:
        raise GmailError(400, "badRequest", f"Invalid Content-Range: {header}")
    first, last, total = match.groups()
    return (
        int(first) if first else None,
        int(last) if last else None,
        int(total) if total and total != "*" else session.total,
    )
