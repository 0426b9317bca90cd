"""SMTP emulator (aiosmtpd) that behaves like Microsoft 365's or Gmail's submission servers.

- STARTTLS on one port (required before AUTH); implicit TLS on another for Gmail only
  (Exchange Online has no implicit-TLS submission port).
- The providers' AUTH mechanisms: Exchange offers LOGIN and XOAUTH2 (not PLAIN), Gmail
  PLAIN, LOGIN and XOAUTH2.
- AUTH XOAUTH2 checked against the identity emulators: Microsoft tokens are verified as
  JWTs with the emulator's published keys (audience — a Graph token is not Exchange's —,
  expiry, issuer and `tid` against the mailbox's directory, SMTP.Send scope or the
  SMTP.SendAsApp role, the user); Google tokens through the emulator's `tokeninfo`.
- Exchange's SMTP AUTH switch: off for the organisation unless enabled (Microsoft's default
  for tenants created since 2020; `--smtp-auth-enabled` or the control API turns it on),
  and per mailbox on, off, or following the organisation.
- AUTH LOGIN/PLAIN for basic-auth mailboxes, `550 5.7.30` once basic auth is "removed",
  Exchange's security-defaults refusal; Gmail's `535-5.7.8` for a wrong password and
  `534-5.7.9` for an account password where an app password is needed.
- The real failure replies (`docs/providers.md`), from the table in `fleetmail_runtime.smtp_replies`:
  `535 5.7.139` in its variants, `535 5.7.3` for a bad Microsoft token, Gmail's `334` JSON
  challenge then `535-5.7.8`, `550 5.7.60` for an envelope sender and `554 5.2.252
  SendAsDenied` for a From the mailbox may not send as. Gmail instead rewrites a From that
  is not one of the account's addresses to the account's own.
- The providers' sending limits per mailbox (`smtp_limits`): concurrent submissions, the
  rate a minute, the daily quota, message size, recipients per message, line length; each
  shrunk per mailbox through the control API, and the emulator's clock moved forward so a
  day passes at once.
- Injectable replies at any stage (auth, mail, rcpt, data; for the mail APIs `api` before
  a request is carried out, `answer` for an unreadable success after it, `draft_send` for
  Graph's send of a draft), for every session or one mailbox's; every accepted message kept in a Maildir and listed by the control API
  (`http://127.0.0.1:<control-port>/_emulator/...`), and every refusal it gave
  (`/_emulator/replies`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import mailbox
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import formataddr, getaddresses, parseaddr
from pathlib import Path
from typing import Any

import httpx
import jwt
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fleetmail_runtime import smtp_replies
from pydantic import BaseModel

from ..ca import TlsFiles
from .entra import directory_id
from .mail_api import ApiState, control_router
from .smtp_limits import (
    DEFAULT_LIMITS,
    EmulatorClock,
    Limits,
    Usage,
    limits_with,
    long_line,
    over_daily,
    reply,
)

MICROSOFT_AUDIENCES = ("https://outlook.office.com", "https://outlook.office365.com")
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"


@dataclass
class Mailbox:
    address: str
    password: str | None = None
    smtp_auth_disabled: bool | None = None
    """Exchange's per-mailbox SmtpClientAuthenticationDisabled: None follows the organisation."""
    send_as: set[str] = field(default_factory=set)
    app_access: set[str] = field(default_factory=set)
    """App (client) ids granted this mailbox (Exchange's Add-MailboxPermission for the
    app's service principal): what an app-only SMTP.SendAsApp token needs."""
    owner_upn: str | None = None
    """The UPN of the user who owns the mailbox, when it is not the mailbox's address:
    Exchange takes a delegated token for the mailbox of the user it was issued to."""
    limits: Limits | None = None
    """This mailbox's own limits (a test shrinks them); None: the flavour's defaults."""
    full: bool = False
    """Its storage quota is used up: Exchange keeps every sent message in Sent Items."""
    directory: str | None = None
    """The id of the Entra directory the mailbox lives in: a token from another is refused.
    None: not checked (the emulator serves mailboxes of any directory)."""
    app_password: str | None = None
    """Gmail: the account has 2-Step Verification and this app password; its own password is
    refused with 534-5.7.9."""
    rest_enabled: bool = True
    """Exchange: the mailbox can be reached through Microsoft Graph (an inactive, soft-deleted
    or on-premises mailbox cannot: MailboxNotEnabledForRESTAPI)."""


@dataclass(frozen=True)
class GivenReply:
    """A refusal (or a held-back answer) the emulator gave, for tests to count."""

    at: float
    stage: str
    user: str | None
    code: int
    text: str


@dataclass(frozen=True)
class XOAuth2Login:
    """Who authenticated with XOAUTH2, and a digest of the token (never the token itself)."""

    login: bytes
    token_sha256: str


@dataclass
class Fault:
    stage: str
    code: int
    text: str
    remaining: int
    user: str | None = None
    """Only this mailbox's sessions take it (other traffic of a shared emulator passes by)."""


@dataclass
class Accepted:
    id: str
    received_at: float
    mail_from: str
    rcpt_tos: list[str]
    auth_user: str | None
    auth_mechanism: str | None
    token_sha256: str | None
    message_id: str | None
    subject: str | None
    size: int
    sha256: str
    port: int
    attachments: list[dict[str, Any]] = field(default_factory=list)
    """Each attachment as the recipient sees it, decoded: name, content type, size, sha256."""


@dataclass
class EmulatorState:
    flavour: str
    maildir: mailbox.Maildir
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    basic_auth_removed: bool = False
    smtp_auth_disabled_for_tenant: bool = True
    """Exchange's Set-TransportConfig -SmtpClientAuthenticationDisabled: true for tenants
    created since 2020, so a mailbox needs SMTP AUTH enabled to submit at all."""
    security_defaults: bool = False
    """Entra's security defaults: password sign-ins to SMTP are refused."""
    require_auth: bool = True
    """Submission ports refuse MAIL before AUTH; off, the emulator is a relay that trusts the
    client's address (an on-premises relay)."""
    rejected_recipients: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    auth_failures: int = 0
    auth_successes: int = 0
    clock: EmulatorClock = field(default_factory=EmulatorClock)
    default_limits: Limits | None = None
    """Every mailbox's limits unless it has its own; None: the provider's."""
    usage: dict[str, Usage] = field(default_factory=dict)
    replies: list[GivenReply] = field(default_factory=list)
    submissions: dict[int, tuple[str, float]] = field(default_factory=dict)
    """Sessions with a message in submission: whose mailbox, and how long its answer is held."""
    api: ApiState = field(default_factory=ApiState)
    """What the provider's mail API (Graph or the Gmail API) keeps besides."""

    def deliver(
        self,
        raw: bytes,
        mail_from: str,
        rcpt_tos: list[str],
        auth_user: str | None,
        mechanism: str | None,
        token_sha256: str | None,
        port: int,
        parsed: EmailMessage | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> Accepted:
        """Keep an accepted message as the recipient would see it, and list it; `parsed` and
        `attachments`: those bytes already parsed, their attachments already decoded (both take
        seconds over a 35 MB message: the mail APIs do it outside the event loop)."""
        if parsed is None:
            parsed = message_from_bytes(raw, policy=policy.default)
        accepted = Accepted(
            id=self.maildir.add(raw),
            received_at=time.time(),
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            auth_user=auth_user,
            auth_mechanism=mechanism,
            token_sha256=token_sha256,
            message_id=parsed.get("Message-ID"),
            subject=parsed.get("Subject"),
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            port=port,
            attachments=attachments_of(parsed) if attachments is None else attachments,
        )
        self.accepted.append(accepted)
        return accepted

    def limits_of(self, user: str) -> Limits:
        box = self.mailbox_of(user)
        if box is not None and box.limits is not None:
            return box.limits
        return self.default_limits or DEFAULT_LIMITS[self.flavour]

    def usage_of(self, user: str) -> Usage:
        return self.usage.setdefault(user.lower(), Usage())

    def given(self, stage: str, user: str | None, answer: str) -> str:
        code, _, text = answer.partition(" ")
        self.replies.append(GivenReply(self.clock.now(), stage, user, int(code[:3]), text))
        return answer

    def release(self, session: Session) -> None:
        """The session's message left submission (sent, refused, reset, or the connection gone)."""
        held = self.submissions.pop(id(session), None)
        if held is not None:
            self.usage_of(held[0]).in_submission -= 1

    def take_fault(self, stage: str, user: str | None = None) -> Fault | None:
        for fault in self.faults:
            if fault.stage == stage and fault.remaining > 0 and fault.user in (None, (user or "").lower()):
                fault.remaining -= 1
                return fault
        return None

    def mailbox_of(self, address: str) -> Mailbox | None:
        return self.mailboxes.get(address.lower())

    def smtp_auth_refusal(self, user: str) -> str | None:
        """Exchange's 5.7.139 when SMTP AUTH is off for this mailbox (its own switch first)."""
        if self.flavour != "microsoft":
            return None
        box = self.mailbox_of(user)
        own = box.smtp_auth_disabled if box is not None else None
        if own is True:
            return reply(smtp_replies.SMTP_AUTH_DISABLED_MAILBOX)
        if own is None and self.smtp_auth_disabled_for_tenant:
            return reply(smtp_replies.SMTP_AUTH_DISABLED)
        return None


class TokenVerifier:
    """Checks XOAUTH2 bearer tokens against the identity emulators, as the real servers do."""

    def __init__(
        self, microsoft_url: str, google_url: str, ca_file: Path, mailbox_of: Callable[[str], Mailbox | None]
    ) -> None:
        self._mailbox_of = mailbox_of
        self.microsoft_url = microsoft_url.rstrip("/")
        self.google_url = google_url.rstrip("/")
        self._http = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(ca_file)), timeout=5.0, trust_env=False
        )
        self._jwks: jwt.PyJWKSet | None = None

    async def _microsoft_keys(self, refresh: bool = False) -> jwt.PyJWKSet:
        if self._jwks is None or refresh:
            response = await self._http.get(f"{self.microsoft_url}/common/discovery/v2.0/keys")
            response.raise_for_status()
            self._jwks = jwt.PyJWKSet.from_dict(response.json())
        return self._jwks

    async def microsoft_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token the Microsoft emulator signed, issuer and lifetime checked,
        the audience left to the caller; raises `jwt.PyJWTError` (`ExpiredSignatureError`
        for an expired one) otherwise."""
        kid = jwt.get_unverified_header(token).get("kid")
        keys = await self._microsoft_keys()
        if not any(k.key_id == kid for k in keys.keys):
            keys = await self._microsoft_keys(refresh=True)
        matching = [k for k in keys.keys if k.key_id == kid]
        if not matching:
            raise jwt.InvalidSignatureError("no such key")
        claims: dict[str, Any] = jwt.decode(
            token, matching[0].key, algorithms=["RS256"], options={"verify_aud": False}
        )
        if claims.get("iss") != f"https://sts.windows.net/{claims.get('tid', '')}/":
            raise jwt.InvalidIssuerError("not the directory's issuer")
        return claims

    async def microsoft(self, user: str, token: str) -> bool:
        try:
            claims = await self.microsoft_claims(token)
        except jwt.PyJWTError:
            return False
        if claims.get("aud") not in MICROSOFT_AUDIENCES:
            return False
        box = self._mailbox_of(user)
        tid = str(claims.get("tid", ""))
        if box is not None and box.directory is not None and tid != box.directory:
            return False  # a token from another directory than the mailbox's
        if "SMTP.SendAsApp" in claims.get("roles", []):
            # App-only: Exchange lets the app's service principal in only where it was granted.
            return box is not None and str(claims.get("appid", "")) in box.app_access
        scopes = str(claims.get("scp", "")).split()
        owner = box.owner_upn if box is not None and box.owner_upn else user
        return "SMTP.Send" in scopes and str(claims.get("upn", "")).lower() == owner.lower()

    async def google_info(self, token: str) -> dict[str, Any] | None:
        """What Google's tokeninfo says of an access token (email, scope); None: not valid."""
        response = await self._http.get(f"{self.google_url}/tokeninfo", params={"access_token": token})
        if response.status_code != 200:
            return None
        info: dict[str, Any] = response.json()
        return info

    async def google(self, user: str, token: str) -> bool:
        info = await self.google_info(token)
        if info is None:
            return False
        return (
            GOOGLE_MAIL_SCOPE in info.get("scope", "").split()
            and info.get("email", "").lower() == user.lower()
        )


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    try:
        text = blob.decode()
    except UnicodeDecodeError:
        return None
    parts = dict(p.split("=", 1) for p in text.split("\x01") if "=" in p)
    user, auth = parts.get("user"), parts.get("auth", "")
    if not user or not auth.startswith("Bearer "):
        return None
    return user, auth[len("Bearer ") :]


class Handler:
    def __init__(self, state: EmulatorState, verifier: TokenVerifier, port: int) -> None:
        self.state = state
        self.verifier = verifier
        self.port = port

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode")
        else:
            challenged = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(challenged, bytes):
                return AuthResult(success=False, handled=True)
            blob = challenged
        parsed = parse_xoauth2(blob)
        if parsed is None:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Invalid XOAUTH2 auth data")
        user, token = parsed
        if (fault := self.state.take_fault("auth", user)) is not None:
            self.state.auth_failures += 1
            return AuthResult(success=False, handled=False, message=f"{fault.code} {fault.text}")
        if self.state.flavour == "gmail":
            ok = await self.verifier.google(user, token)
            if not ok:
                self.state.auth_failures += 1
                challenge = base64.b64encode(smtp_replies.GMAIL_XOAUTH2_CHALLENGE.encode())
                await server.push(b"334 " + challenge)
                await server._reader.readline()  # the client's empty answer
                return AuthResult(success=False, handled=False, message=reply(smtp_replies.GMAIL_AUTH_FAILED))
        else:
            ok = await self.verifier.microsoft(user, token)
            if not ok:
                self.state.auth_failures += 1
                return AuthResult(
                    success=False,
                    handled=False,
                    message=f"535 5.7.3 Authentication unsuccessful [{uuid.uuid4().hex[:16].upper()}]",
                )
            if (refusal := self.state.smtp_auth_refusal(user)) is not None:
                self.state.auth_failures += 1
                return AuthResult(success=False, handled=False, message=refusal)
        self.state.auth_successes += 1
        digest = hashlib.sha256(token.encode()).hexdigest()
        return AuthResult(success=True, auth_data=XOAuth2Login(user.encode(), digest))

    def authenticate_basic(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user = auth_data.login.decode()
        if self.state.basic_auth_removed:
            self.state.auth_failures += 1
            return AuthResult(success=False, handled=False, message=reply(smtp_replies.BASIC_AUTH_REFUSED))
        refusal = self._basic_refusal(user, auth_data.password)
        if refusal is not None:
            self.state.auth_failures += 1
            return AuthResult(success=False, handled=False, message=refusal)
        self.state.auth_successes += 1
        return AuthResult(success=True, auth_data=auth_data)

    def _basic_refusal(self, user: str, password: bytes) -> str | None:
        box = self.state.mailbox_of(user)
        if self.state.flavour == "gmail":
            if box is not None and box.app_password is not None:
                if box.app_password.encode() == password:
                    return None
                if box.password is not None and box.password.encode() == password:
                    return reply(smtp_replies.GMAIL_APP_PASSWORD_REQUIRED)
            elif box is not None and box.password is not None and box.password.encode() == password:
                return None
            return reply(smtp_replies.GMAIL_AUTH_FAILED)
        if self.state.security_defaults:
            return reply(smtp_replies.SECURITY_DEFAULTS_LOCKED)
        if (refusal := self.state.smtp_auth_refusal(user)) is not None:
            return refusal
        if box is None or box.password is None or box.password.encode() != password:
            return "535 5.7.3 Authentication unsuccessful"
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if (fault := self.state.take_fault("mail", self._user(session, address))) is not None:
            return f"{fault.code} {fault.text}"
        if self.state.require_auth and not session.authenticated:
            if self.state.flavour == "gmail":
                return (
                    "530-5.7.0 Authentication Required. For more information, go to\r\n"
                    "530 5.7.0  https://support.google.com/mail/?p=WantAuthError - gsmtp"
                )
            return reply(smtp_replies.NOT_AUTHENTICATED)
        user = self._user(session, address)
        limits = self.state.limits_of(user)
        size = next((o[5:] for o in mail_options if o.upper().startswith("SIZE=")), "")
        if size.isdigit() and int(size) > limits.max_message_bytes:
            return self.state.given("mail", user, reply(smtp_replies.MESSAGE_SIZE_EXCEEDED))
        usage = self.state.usage_of(user)
        self.state.release(session)
        if limits.concurrent is not None and usage.in_submission >= limits.concurrent:
            return self.state.given("mail", user, reply(smtp_replies.CONCURRENCY_LIMIT))
        usage.in_submission += 1
        held_s = usage.start(self.state.clock.now(), limits.per_minute, limits.rate_window_s)
        self.state.submissions[id(session)] = (user, held_s)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    @staticmethod
    def _user(session: Session, mail_from: str) -> str:
        """Whose limits apply: the authenticated mailbox (a relay without AUTH: the sender)."""
        auth_data = session.auth_data
        if isinstance(auth_data, LoginPassword | XOAuth2Login):
            return auth_data.login.decode().lower()
        return mail_from.lower()

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.state.release(session)
        return "250 2.0.0 Resetting"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if (
            fault := self.state.take_fault("rcpt", self._user(session, str(envelope.mail_from or "")))
        ) is not None:
            return f"{fault.code} {fault.text}"
        user = self._user(session, str(envelope.mail_from or ""))
        if len(envelope.rcpt_tos) >= self.state.limits_of(user).max_recipients:
            return self.state.given("rcpt", user, reply(smtp_replies.TOO_MANY_RECIPIENTS))
        if address.lower() in self.state.rejected_recipients:
            return "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            return await self._data(session, envelope)
        finally:
            self.state.release(session)

    async def _limits_refusal(self, session: Session, envelope: Envelope, raw: bytes) -> str | None:
        user = self._user(session, str(envelope.mail_from or ""))
        limits, usage, now = self.state.limits_of(user), self.state.usage_of(user), self.state.clock.now()
        held_s = self.state.submissions.get(id(session), (user, 0.0))[1]
        if held_s > 0:
            self.state.given("rate", user, f"250 held {held_s:.3f} s: over {limits.per_minute} a minute")
            await asyncio.sleep(held_s)
        if len(raw) > limits.max_message_bytes:
            return self.state.given("data", user, reply(smtp_replies.MESSAGE_SIZE_EXCEEDED))
        if long_line(raw):
            return self.state.given("data", user, reply(smtp_replies.LINE_TOO_LONG))
        box = self.state.mailbox_of(user)
        if box is not None and box.full and self.state.flavour == "microsoft":
            return self.state.given("data", user, reply(smtp_replies.MAILBOX_FULL))
        if (quota := over_daily(limits, usage, now, len(envelope.rcpt_tos))) is not None:
            return self.state.given("data", user, quota)
        usage.sent.append((now, len(envelope.rcpt_tos) if limits.daily_counts == "recipients" else 1))
        return None

    async def _data(self, session: Session, envelope: Envelope) -> str:
        if (
            fault := self.state.take_fault("data", self._user(session, str(envelope.mail_from or "")))
        ) is not None:
            return f"{fault.code} {fault.text}"
        raw = envelope.original_content or b""
        if (refusal := await self._limits_refusal(session, envelope, raw)) is not None:
            return refusal
        parsed = message_from_bytes(raw, policy=policy.default)
        auth_data = session.auth_data
        auth_user = auth_data.login.decode() if isinstance(auth_data, LoginPassword | XOAuth2Login) else None
        from_addresses = [a.lower() for _, a in getaddresses([str(parsed.get("From", ""))])]
        if auth_user:
            box = self.state.mailbox_of(auth_user)
            allowed = {auth_user.lower()} | (box.send_as if box else set())
            if self.state.flavour == "gmail":
                if any(a not in allowed for a in from_addresses):
                    raw = gmail_rewritten(parsed, auth_user)
            elif str(envelope.mail_from).lower() not in allowed:
                return reply(smtp_replies.SEND_AS_DENIED)
            elif (denied := next((a for a in from_addresses if a not in allowed), None)) is not None:
                return reply(smtp_replies.SEND_AS_DENIED_AT_SUBMISSION).format(
                    mailbox=auth_user, sender=denied
                )
        mechanism, token_sha256 = None, None
        if isinstance(auth_data, XOAuth2Login):
            mechanism, token_sha256 = "XOAUTH2", auth_data.token_sha256
        elif isinstance(auth_data, LoginPassword):
            mechanism = "PLAIN/LOGIN"
        self.state.deliver(
            raw,
            str(envelope.mail_from),
            list(envelope.rcpt_tos),
            auth_user,
            mechanism,
            token_sha256,
            self.port,
        )
        if self.state.flavour == "gmail":
            return f"250 2.0.0 OK  {int(time.time())} {uuid.uuid4().hex[:12]} - gsmtp"
        return f"250 2.0.0 OK <{uuid.uuid4()}@emulator.outlook.com> [Hostname=EMULATOR]"


def attachments_of(parsed: Message) -> list[dict[str, Any]]:
    found = []
    for part in parsed.walk():
        if part.is_multipart() or part.get_filename() is None:
            continue
        content = part.get_payload(decode=True)
        data = content if isinstance(content, bytes) else b""
        found.append(
            {
                "name": part.get_filename(),
                "content_type": part.get_content_type(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return found


def gmail_rewritten(parsed: Any, account: str) -> bytes:
    """Gmail's submission server replaces a From that is not one of the account's addresses
    (its own or a verified "Send mail as" alias) with the account's, keeping the name."""
    original = str(parsed["From"])
    name, _ = parseaddr(original)
    del parsed["From"]
    parsed["From"] = formataddr((name, account)) if name else account
    parsed["X-Google-Original-From"] = original
    raw: bytes = parsed.as_bytes(policy=policy.SMTP)
    return raw


class LimitsRequest(BaseModel):
    """Limits of a mailbox that differ from its provider's defaults."""

    concurrent: int | None = None
    per_minute: int | None = None
    daily: int | None = None
    max_message_bytes: int | None = None
    max_recipients: int | None = None
    rate_window_s: float | None = None
    api_concurrent: int | None = None
    api_quota: int | None = None
    api_quota_window_s: float | None = None
    api_upload_bytes: int | None = None
    api_upload_window_s: float | None = None


class MailboxRequest(BaseModel):
    address: str
    password: str | None = None
    smtp_auth_disabled: bool | None = None
    send_as: list[str] = []
    app_access: list[str] = []
    owner_upn: str | None = None
    limits: LimitsRequest | None = None
    full: bool = False
    directory: str | None = None
    """The mailbox's Entra directory, by id or domain (as an authority path names it)."""
    app_password: str | None = None
    rest_enabled: bool = True


class ClockRequest(BaseModel):
    advance_s: float


class FaultRequest(BaseModel):
    stage: str = "mail"
    code: int = 451
    text: str = "4.3.2 Service temporarily unavailable, please try again later"
    count: int = 1
    user: str | None = None


class SettingsRequest(BaseModel):
    default_limits: LimitsRequest | None = None
    basic_auth_removed: bool | None = None
    smtp_auth_disabled_for_tenant: bool | None = None
    security_defaults: bool | None = None
    require_auth: bool | None = None
    rejected_recipients: list[str] | None = None


def control_app(state: EmulatorState) -> FastAPI:
    api = FastAPI(title="SMTP emulator control", docs_url=None, redoc_url=None)

    @api.post("/_emulator/mailboxes")
    async def put_mailbox(body: MailboxRequest) -> dict[str, str]:
        limits = None
        if body.limits is not None:
            limits = limits_with(DEFAULT_LIMITS[state.flavour], body.limits.model_dump(exclude_unset=True))
        state.mailboxes[body.address.lower()] = Mailbox(
            body.address,
            body.password,
            body.smtp_auth_disabled,
            {a.lower() for a in body.send_as},
            set(body.app_access),
            body.owner_upn,
            limits,
            body.full,
            directory_id(body.directory) if body.directory else None,
            body.app_password,
            body.rest_enabled,
        )
        return {"address": body.address}

    @api.post("/_emulator/clock")
    async def clock(body: ClockRequest) -> dict[str, float]:
        """Move the emulator's clock forward: its minute and day windows pass at once."""
        state.clock.advance(body.advance_s)
        return {"offset_s": state.clock.offset_s}

    @api.get("/_emulator/replies")
    async def replies(code: int | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """Every refusal given (and every answer held back for the rate: stage `rate`)."""
        return [
            r.__dict__
            for r in state.replies
            if (code is None or r.code == code) and (user is None or r.user == user.lower())
        ]

    @api.post("/_emulator/faults")
    async def faults(body: FaultRequest) -> dict[str, int]:
        state.faults.append(
            Fault(body.stage, body.code, body.text, body.count, body.user.lower() if body.user else None)
        )
        return {"queued": body.count}

    @api.post("/_emulator/settings")
    async def settings(body: SettingsRequest) -> dict[str, bool]:
        if body.default_limits is not None:
            state.default_limits = limits_with(
                DEFAULT_LIMITS[state.flavour], body.default_limits.model_dump(exclude_unset=True)
            )
        if body.basic_auth_removed is not None:
            state.basic_auth_removed = body.basic_auth_removed
        if body.smtp_auth_disabled_for_tenant is not None:
            state.smtp_auth_disabled_for_tenant = body.smtp_auth_disabled_for_tenant
        if body.security_defaults is not None:
            state.security_defaults = body.security_defaults
        if body.require_auth is not None:
            state.require_auth = body.require_auth
        if body.rejected_recipients is not None:
            state.rejected_recipients = {a.lower() for a in body.rejected_recipients}
        return {"ok": True}

    @api.get("/_emulator/messages")
    async def messages(
        subject_prefix: str | None = None, message_id: str | None = None, sender: str | None = None
    ) -> list[dict[str, Any]]:
        """Every accepted message, oldest first; or those whose subject starts with
        `subject_prefix`, whose Message-ID is `message_id`, or sent by `sender` (a session's
        tests poll for their own messages among thousands)."""
        return [
            a.__dict__
            for a in state.accepted
            if (subject_prefix is None or (a.subject or "").startswith(subject_prefix))
            and (message_id is None or a.message_id == message_id)
            and (sender is None or a.mail_from == sender)
        ]

    @api.get("/_emulator/messages/{key}/raw")
    async def raw(key: str) -> Response:
        try:
            message = state.maildir.get_bytes(key)
        except KeyError:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return Response(message, media_type="message/rfc822")

    @api.get("/_emulator/stats")
    async def stats() -> dict[str, int]:
        return {
            "accepted": len(state.accepted),
            "auth_failures": state.auth_failures,
            "auth_successes": state.auth_successes,
        }

    @api.get("/_emulator/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    api.include_router(control_router(state))
    return api


class ProviderSMTP(SMTP):
    """Provider servers accept AUTH lines far longer than RFC 5321's 512: bearer tokens are."""

    command_size_limit = 16_384
    line_length_limit = 16_384

    def __init__(self, *args: Any, state: EmulatorState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.emulator_state = state

    def connection_lost(self, error: Exception | None) -> None:
        if self.session is not None:
            self.emulator_state.release(self.session)
        super().connection_lost(error)


def server_tls_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def mail_api_app(state: EmulatorState, verifier: TokenVerifier, port: int) -> FastAPI:
    """The provider's mail API next to its SMTP server: Microsoft Graph or the Gmail API."""
    from . import gmail_api, graph

    module = graph if state.flavour == "microsoft" else gmail_api
    return module.create_app(state, verifier, f"https://127.0.0.1:{port}", port)


async def serve(args: argparse.Namespace, tls: TlsFiles) -> None:
    import uvicorn

    from .serve import KEEP_ALIVE_S, https_server, run_servers

    args.maildir.parent.mkdir(parents=True, exist_ok=True)
    state = EmulatorState(flavour=args.flavour, maildir=mailbox.Maildir(args.maildir, create=True))
    state.smtp_auth_disabled_for_tenant = not args.smtp_auth_enabled
    verifier = TokenVerifier(args.microsoft_url, args.google_url, tls.ca_cert, state.mailbox_of)
    context = server_tls_context(tls)
    hostname = "emulator.outlook.com" if args.flavour == "microsoft" else "smtp.gmail.com"
    loop = asyncio.get_running_loop()

    def factory(port: int, implicit: bool) -> SMTP:
        handler = Handler(state, verifier, port)
        return ProviderSMTP(
            handler,
            hostname=hostname,
            ident="Microsoft ESMTP MAIL Service" if args.flavour == "microsoft" else "gsmtp",
            tls_context=None if implicit else context,
            require_starttls=not implicit,
            auth_required=False,  # MAIL before AUTH gets the provider's own 530 (handle_MAIL)
            auth_require_tls=not implicit,
            authenticator=handler.authenticate_basic,
            auth_exclude_mechanism=["PLAIN"] if args.flavour == "microsoft" else None,
            # What each server advertises in EHLO SIZE: Exchange Online its transport's 150 MB
            # (the mailbox's own 35 MB is checked at DATA), Gmail its 35,882,577 bytes.
            data_size_limit=157_286_400
            if args.flavour == "microsoft"
            else DEFAULT_LIMITS["gmail"].max_message_bytes,
            loop=loop,
            state=state,
        )

    starttls = await loop.create_server(
        lambda: factory(args.starttls_port, False), "127.0.0.1", args.starttls_port
    )
    implicit = None
    if args.flavour == "gmail":  # smtp.office365.com has no implicit-TLS port
        implicit = await loop.create_server(
            lambda: factory(args.tls_port, True), "127.0.0.1", args.tls_port, ssl=context
        )
    control = uvicorn.Server(
        uvicorn.Config(
            control_app(state),
            host="127.0.0.1",
            port=args.control_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
    )
    servers = [control]
    ready = (
        f"smtp emulator ({args.flavour}) ready: starttls 127.0.0.1:{args.starttls_port} "
        f"tls 127.0.0.1:{args.tls_port} control http://127.0.0.1:{args.control_port}"
    )
    if args.api_port:
        servers.append(https_server(mail_api_app(state, verifier, args.api_port), args.api_port, tls))
        ready += f" api https://127.0.0.1:{args.api_port}"
    await run_servers(servers, ready)
    starttls.close()
    if implicit is not None:
        implicit.close()
    print(json.dumps({"accepted": len(state.accepted)}), flush=True)
