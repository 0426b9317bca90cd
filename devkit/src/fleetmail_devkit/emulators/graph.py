"""Microsoft Graph's mail API, as the Graph emulator serves it (the Microsoft SMTP emulator's
process, `--api-port`, HTTPS).

- `POST /v1.0/{me | users/{id | userPrincipalName}}/sendMail`: JSON (`message`,
  `saveToSentItems`) or MIME (base64, `text/plain`, always saved); 202 and no body.
- `POST …/messages` (a draft, JSON or MIME; 201), `POST …/messages/{id}/attachments` (a file
  under 4 MB as a request), `POST …/messages/{id}/attachments/createUploadSession` (2 MiB to 150 MB; PUT byte
  ranges of up to 4 MB to its `uploadUrl`, without a token), `POST …/messages/{id}/send` (202),
  `DELETE …/messages/{id}` (204).
- `GET …/mailFolders/SentItems/messages?$filter=internetMessageId eq '<id>'`.
- A request body over 4 MB: 413. The token: Graph's audience, the directory's issuer, not
  expired (401 InvalidAuthenticationToken); `Mail.Send` to send, `Mail.ReadWrite` for drafts,
  `Mail.Read` to read, delegated (`scp`, the user's own mailbox) or application (`roles`, an
  application access policy may limit the mailboxes) — 403 ErrorAccessDenied otherwise.
  A From the mailbox may not send as: 403 ErrorSendAsDenied. A mailbox not enabled for
  REST: 404 MailboxNotEnabledForRESTAPI. Throttle per app and mailbox (`mail_api`): 429 with
  Retry-After.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .entra import GRAPH
from .graph_messages import (
    MAX_REQUEST_BYTES,
    MAX_UPLOAD_SESSION_BYTES,
    MIN_UPLOAD_SESSION_BYTES,
    UPLOAD_SESSION_LIFETIME_S,
    Draft,
    GraphError,
    UploadSession,
    bad_request,
    content_range,
    draft_resource,
    file_attachment,
    from_addresses,
    from_json,
    from_mime,
    iso,
    recipients_of,
    rendered,
)
from .mail_api import SentMessage, done, garbled, over_budget, over_upload
from .smtp import EmulatorState, TokenVerifier
from .smtp_limits import over_daily

GRAPH_AUDIENCES = (GRAPH, "00000003-0000-0000-c000-000000000000")
SEND, WRITE, READ = (
    frozenset({"Mail.Send"}),
    frozenset({"Mail.ReadWrite"}),
    frozenset({"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"}),
)
ACCESS_DENIED = "Access is denied. Check credentials and try again."
POLICY_DENIED = "Access to OData is disabled: Blocked by tenant configured AppOnly AccessPolicy settings."
SEND_AS_DENIED = (
    "The user account which was used to submit this request does not have the right to send mail "
    "on behalf of the specified sending account., Cannot submit message."
)
FAULT_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
INTERNET_MESSAGE_ID_FILTER = re.compile(r"^\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*$")
MAILBOX_PATHS = ("/v1.0/me", "/v1.0/users/{user}")


@dataclass(frozen=True)
class Caller:
    app_id: str
    mailbox: str
    """The address of the mailbox the request acts on, lower case."""
    token_sha256: str


def user_object_id(upn: str) -> str:
    """A user's object id, as the Microsoft emulator writes it into `oid`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"user/{upn.casefold()}"))


def create_app(state: EmulatorState, verifier: TokenVerifier, base_url: str, port: int) -> FastAPI:
    api = FastAPI(title="Microsoft Graph emulator", docs_url=None, redoc_url=None)
    drafts: dict[str, Draft] = state.api.drafts
    sessions: dict[str, UploadSession] = {}

    @api.exception_handler(GraphError)
    async def graph_error(request: Request, exc: GraphError) -> Response:
        request_id = str(uuid.uuid4())
        inner = {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
        }
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, "innerError": inner}},
            status_code=exc.status,
            headers={"request-id": request_id, **exc.headers},
        )

    async def claims_of(request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = await verifier.microsoft_claims(token)
        except jwt.ExpiredSignatureError as exc:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            ) from exc
        except jwt.PyJWTError as exc:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.") from exc
        if claims.get("aud") not in GRAPH_AUDIENCES:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        claims["token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
        return claims

    def mailbox_named(name: str) -> str:
        """The mailbox a path names: by address, by its owner's UPN, or by object id."""
        for box in state.mailboxes.values():
            owner = box.owner_upn or box.address
            if name.lower() in (box.address.lower(), owner.lower(), user_object_id(owner)):
                return box.address.lower()
        if "@" not in name:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{name}' is invalid.")
        return name.lower()

    def authorize(request: Request, claims: dict[str, Any], needs: frozenset[str]) -> Caller:
        named = request.path_params.get("user")
        delegated = "scp" in claims
        if delegated:
            own = mailbox_named(str(claims.get("upn", "")))
            mailbox = own if named is None else mailbox_named(named)
            granted = set(str(claims["scp"]).split())
            if not needs & granted or mailbox != own:
                raise GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
        else:
            if named is None:
                raise bad_request("/me request is only valid with delegated authentication flow.")
            mailbox = mailbox_named(named)
            if not needs & set(claims.get("roles", [])):
                raise GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
            allowed = state.api.app_access_policies.get(str(claims.get("appid", "")))
            if allowed is not None and mailbox not in allowed:
                raise GraphError(403, "ErrorAccessDenied", POLICY_DENIED)
        box = state.mailbox_of(mailbox)
        if box is not None and box.directory is not None and box.directory != claims.get("tid"):
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{named or mailbox}' is invalid.")
        if box is not None and not box.rest_enabled:
            raise GraphError(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        return Caller(str(claims.get("appid", "")), mailbox, str(claims["token_sha256"]))

    @asynccontextmanager
    async def call(request: Request, needs: frozenset[str]) -> AsyncIterator[Caller]:
        """A request's way in: the token, the permission, then the throttle; held while the
        handler runs, so that concurrent requests count."""
        caller = authorize(request, await claims_of(request), needs)
        if (fault := state.take_fault("api", caller.mailbox)) is not None:
            retry = {"Retry-After": "1"} if fault.code in (429, 503) else None
            raise GraphError(fault.code, FAULT_CODES.get(fault.code, "UnknownError"), fault.text, retry)
        over = over_budget(state, caller.app_id, caller.mailbox, 1)
        if over is not None:
            which, retry_after_s = over
            headers = {"Retry-After": str(retry_after_s)}
            if which == "concurrency":
                raise GraphError(
                    429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", headers
                )
            raise GraphError(429, "TooManyRequests", "Please retry again later.", headers)
        try:
            await state.api.wait_if_held(caller.mailbox)
            yield caller
        finally:
            done(state, caller.app_id, caller.mailbox)

    def uploads_over(app_id: str, mailbox: str, size: int) -> None:
        if (retry_after_s := over_upload(state, app_id, mailbox, size)) is not None:
            raise GraphError(
                429, "TooManyRequests", "Please retry again later.", {"Retry-After": str(retry_after_s)}
            )

    async def body_of(request: Request, caller: Caller) -> bytes:
        """The request's body: at most 4 MB, counted against the upload budget."""
        too_large = GraphError(
            413, "RequestEntityTooLarge", f"The request is larger than {MAX_REQUEST_BYTES} bytes."
        )
        if int(request.headers.get("content-length") or 0) > MAX_REQUEST_BYTES:
            raise too_large
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            raise too_large
        uploads_over(caller.app_id, caller.mailbox, len(body))
        return body

    async def json_of(request: Request, caller: Caller) -> dict[str, Any]:
        try:
            parsed = json.loads(await body_of(request, caller))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and "
                "payload is of valid JSON format."
            )
        return parsed

    async def message_of(request: Request, caller: Caller) -> tuple[EmailMessage, bool]:
        """The request's message and whether to keep it in Sent Items."""
        if request.headers.get("content-type", "").lower().startswith("text/plain"):
            return from_mime(await body_of(request, caller), caller.mailbox), True
        parsed = await json_of(request, caller)
        if "sendMail" not in request.url.path:
            return from_json(parsed, caller.mailbox), True
        if not isinstance(parsed.get("message"), dict):
            raise bad_request("Empty Payload. JSON content expected.", "ErrorInvalidRequest")
        return from_json(parsed["message"], caller.mailbox), bool(parsed.get("saveToSentItems", True))

    async def send(caller: Caller, message: EmailMessage, save: bool) -> None:
        """What Exchange does with a message to send: who it may be from, the mailbox's
        limits, then delivery (and Sent Items)."""
        box = state.mailbox_of(caller.mailbox)
        allowed = {caller.mailbox} | (box.send_as if box else set())
        if any(a not in allowed for a in from_addresses(message)):
            raise GraphError(403, "ErrorSendAsDenied", SEND_AS_DENIED)
        recipients = recipients_of(message)
        if not recipients:
            raise bad_request("At least one recipient is not valid.", "ErrorInvalidRecipients")
        raw, attachments = await asyncio.to_thread(rendered, message)
        limits, usage, now = (
            state.limits_of(caller.mailbox),
            state.usage_of(caller.mailbox),
            state.clock.now(),
        )
        if len(raw) > limits.max_message_bytes:
            raise GraphError(
                413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
            )
        if box is not None and box.full:
            raise GraphError(403, "ErrorQuotaExceeded", "The mailbox has exceeded its quota.")
        if over_daily(limits, usage, now, len(recipients)) is not None:
            raise GraphError(
                403, "ErrorSubmissionQuotaExceeded", "Cannot submit message. The sending quota was exceeded."
            )
        usage.sent.append((now, len(recipients) if limits.daily_counts == "recipients" else 1))
        sender = from_addresses(message)
        delivered = state.deliver(
            raw,
            sender[0] if sender else caller.mailbox,
            recipients,
            caller.mailbox,
            "GRAPH",
            caller.token_sha256,
            port,
            message,
            attachments,
        )
        if save:
            state.api.sent.append(
                SentMessage(
                    "AAMk" + secrets.token_urlsafe(40),
                    caller.mailbox,
                    delivered.message_id or "",
                    delivered.subject or "",
                    now,
                    delivered.id,
                )
            )

    def draft_of(caller: Caller, draft_id: str) -> Draft:
        draft = drafts.get(draft_id)
        if draft is None or draft.mailbox != caller.mailbox:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return draft

    async def send_mail(request: Request) -> Response:
        async with call(request, SEND) as caller:
            message, save = await message_of(request, caller)
            await send(caller, message, save)
        return Response(status_code=202)

    async def create_draft(request: Request) -> Response:
        async with call(request, WRITE) as caller:
            message, _ = await message_of(request, caller)
            draft = Draft("AAMk" + secrets.token_urlsafe(40), caller.mailbox, message, state.clock.now())
            drafts[draft.id] = draft
            if (fault := state.take_fault("answer", caller.mailbox)) is not None:
                return garbled(fault)
        return JSONResponse(draft_resource(draft, base_url), status_code=201)

    async def add_attachment(request: Request) -> Response:
        async with call(request, WRITE) as caller:
            draft = draft_of(caller, request.path_params["draft_id"])
            name, content_type, data = file_attachment(await json_of(request, caller))
            draft.attachments.append((name, content_type, data))
        return JSONResponse(
            {"id": secrets.token_urlsafe(24), "name": name, "size": len(data)}, status_code=201
        )

    async def create_upload_session(request: Request) -> Response:
        async with call(request, WRITE) as caller:
            draft = draft_of(caller, request.path_params["draft_id"])
            item = (await json_of(request, caller)).get("AttachmentItem") or {}
            size = item.get("size")
            if not isinstance(size, int):
                raise bad_request("The AttachmentItem's size is required.", "ErrorInvalidRequest")
            if size < MIN_UPLOAD_SESSION_BYTES:
                raise bad_request(
                    "Attachment size must be greater than the minimum size.",
                    "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                )
            if size > MAX_UPLOAD_SESSION_BYTES:
                raise bad_request(
                    "The attachment is larger than 150 MB.",
                    "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
                )
            session = UploadSession(
                secrets.token_urlsafe(24),
                draft.id,
                caller.app_id,
                secrets.token_urlsafe(32),
                str(item.get("name") or "attachment"),
                str(item.get("contentType") or "application/octet-stream"),
                size,
                state.clock.now() + UPLOAD_SESSION_LIFETIME_S,
            )
            sessions[session.id] = session
        upload_url = (
            f"{base_url}/api/v2.0/Users('{caller.mailbox}')/Messages('{draft.id}')"
            f"/AttachmentSessions('{session.id}')?authtoken={session.auth_token}"
        )
        return JSONResponse(
            {
                "@odata.context": f"{base_url}/v1.0/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": upload_url,
                "expirationDateTime": iso(session.expires_at),
                "nextExpectedRanges": ["0-"],
            },
            status_code=201,
        )

    async def delete_draft(request: Request) -> Response:
        async with call(request, WRITE) as caller:
            draft = draft_of(caller, request.path_params["draft_id"])
            del drafts[draft.id]
        return Response(status_code=204)

    async def send_draft(request: Request) -> Response:
        async with call(request, SEND) as caller:
            draft = draft_of(caller, request.path_params["draft_id"])
            if (fault := state.take_fault("draft_send", caller.mailbox)) is not None:
                # A failure after the draft was made: the draft stays unless the client deletes it.
                raise GraphError(fault.code, FAULT_CODES.get(fault.code, "UnknownError"), fault.text)
            await send(caller, await asyncio.to_thread(draft.to_send), True)
            del drafts[draft.id]
        return Response(status_code=202)

    async def sent_items(request: Request) -> Response:
        async with call(request, READ) as caller:
            if request.path_params["folder"].lower() != "sentitems":
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            wanted = None
            if (clause := request.query_params.get("$filter")) is not None:
                match = INTERNET_MESSAGE_ID_FILTER.match(clause)
                if match is None:
                    raise bad_request("Invalid filter clause", "ErrorInvalidUrlQueryFilter")
                wanted = match.group(1).replace("''", "'")
            found = [m for m in state.api.sent_by(caller.mailbox) if wanted in (None, m.internet_message_id)]
        return JSONResponse(
            {
                "@odata.context": f"{base_url}/v1.0/$metadata#users('{caller.mailbox}')/mailFolders('SentItems')/messages",
                "value": [
                    {
                        "id": m.id,
                        "internetMessageId": m.internet_message_id,
                        "subject": m.subject,
                        "sentDateTime": iso(m.sent_at),
                        "isDraft": False,
                    }
                    for m in found
                ],
            }
        )

    for prefix in MAILBOX_PATHS:
        api.add_api_route(f"{prefix}/sendMail", send_mail, methods=["POST"])
        api.add_api_route(f"{prefix}/messages", create_draft, methods=["POST"])
        api.add_api_route(f"{prefix}/messages/{{draft_id}}/attachments", add_attachment, methods=["POST"])
        api.add_api_route(
            f"{prefix}/messages/{{draft_id}}/attachments/createUploadSession",
            create_upload_session,
            methods=["POST"],
        )
        api.add_api_route(f"{prefix}/messages/{{draft_id}}/send", send_draft, methods=["POST"])
        api.add_api_route(f"{prefix}/messages/{{draft_id}}", delete_draft, methods=["DELETE"])
        api.add_api_route(f"{prefix}/mailFolders/{{folder}}/messages", sent_items, methods=["GET"])

    @api.put("/api/v2.0/{rest:path}")
    async def upload(rest: str, request: Request) -> Response:
        """A byte range of an upload session, authorised by its URL alone."""
        match = re.search(r"AttachmentSessions\('([^']+)'\)", rest)
        session = sessions.get(match.group(1)) if match else None
        if session is None or not secrets.compare_digest(
            request.query_params.get("authtoken", ""), session.auth_token
        ):
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found.")
        if "authorization" in request.headers:
            # The upload URL is pre-authenticated for Outlook; a Graph token is for another audience.
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        if state.clock.now() > session.expires_at:
            raise GraphError(404, "ErrorItemNotFound", "The upload session has expired.")
        body = await request.body()
        _, last = content_range(request.headers.get("content-range"), session, len(body))
        draft = drafts.get(session.draft_id)
        if draft is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        uploads_over(session.app_id, draft.mailbox, len(body))
        session.data.extend(body)
        if last + 1 < session.size:
            return JSONResponse(
                {
                    "@odata.context": f"{base_url}/api/v2.0/$metadata#Microsoft.OutlookServices.UploadSession",
                    "ExpirationDateTime": iso(session.expires_at),
                    "NextExpectedRanges": [str(last + 1)],
                }
            )
        del sessions[session.id]
        draft.attachments.append((session.name, session.content_type, bytes(session.data)))
        attachment_id = secrets.token_urlsafe(24)
        location = f"{base_url}/api/v2.0/Users('{draft.mailbox}')/Messages('{draft.id}')/Attachments('{attachment_id}')"
        return Response(status_code=201, headers={"Location": location})

    return api
