"""The mail transport: SMTP through aiosmtplib, STARTTLS or implicit TLS, XOAUTH2 or PLAIN/LOGIN.

Library failures are translated into mail-service's errors using the reply table that the
SMTP emulator shares (`fleetmail_runtime.smtp_replies`).

The tenant names its SMTP server: its host is resolved once per connection, every address is
checked against the operator's outbound rule (`fleetmail_runtime.outbound`), and aiosmtplib is
handed a socket connected to a checked address, keeping the host name for TLS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import SmtpSecurity, SmtpSettings
from fleetmail_runtime import smtp_replies
from fleetmail_runtime.outbound import DestinationRefused, OutboundPolicy
from fleetmail_runtime.smtp_replies import ReplyClass
from fleetmail_runtime.telemetry import SpanScope
from opentelemetry.trace import Span, SpanKind

from ..domain.mime import MimeMessage
from ..errors import (
    DeliveryError,
    DestinationNotAllowed,
    MailboxBusy,
    QuotaExceeded,
    SmtpPermanent,
    SmtpTransient,
    TokenRejected,
)
from ..ports import Credentials, SendResult
from ..telemetry import tracer


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def error_of_reply(code: int, message: str, during_auth: bool) -> DeliveryError:
    """The mail-service error for an SMTP server's refusal, from the shared reply table."""
    reply = f"{code} {message}"
    klass, known = smtp_replies.classify(code, message)
    if klass is ReplyClass.TOKEN_REJECTED and during_auth:
        return TokenRejected(reply)
    if klass is ReplyClass.QUOTA:
        return QuotaExceeded(reply, known.remedy if known else None)
    if klass is ReplyClass.TRANSIENT and known is not None and known.reason_code == "concurrency_limit":
        return MailboxBusy(f"the mailbox has too many messages in submission: {reply}", reply)
    if klass is ReplyClass.TRANSIENT:
        return SmtpTransient(f"the SMTP server deferred the message: {reply}", reply)
    if known is not None:
        return SmtpPermanent(
            f"the SMTP server refused the message: {reply}",
            FailureReason(known.reason_code),
            known.remedy,
            reply,
        )
    reason = FailureReason.AUTHENTICATION_FAILED if during_auth else FailureReason.SMTP_REJECTED
    return SmtpPermanent(f"the SMTP server refused the message: {reply}", reason, None, reply)


@dataclass(eq=False)
class Connection:
    """One authenticated SMTP session, and the credentials it was authenticated with."""

    client: aiosmtplib.SMTP
    secret: str = field(repr=False)
    last_used: float = 0.0


PoolKey = tuple[str, int, str, str]


class SmtpDelivery:
    """Sends through a pool of authenticated connections per (server, sender).

    A connection is reused while its sender's credentials are unchanged (the same access
    token): reuse is what makes SMTP fast. A connection the server closed meanwhile is
    replaced once, transparently.
    """

    def __init__(
        self,
        ca_bundle: Path | None,
        timeout_s: float,
        helo_name: str,
        max_connections_per_sender: int = 3,
        idle_timeout_s: float = 60.0,
        *,
        outbound: OutboundPolicy,
    ) -> None:
        self._outbound = outbound
        self._ca_bundle = ca_bundle
        self._context = tls_context(ca_bundle)
        self._tenant_contexts: dict[str, ssl.SSLContext] = {}
        self._timeout_s = timeout_s
        self._helo_name = helo_name
        self._max = max_connections_per_sender
        self._idle_timeout_s = idle_timeout_s
        self._idle: dict[PoolKey, list[Connection]] = defaultdict(list)
        self._slots: dict[PoolKey, asyncio.Semaphore] = {}

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                await self._discard(connection)
        self._idle.clear()

    async def send(
        self,
        server: SmtpSettings,
        credentials: Credentials,
        message: MimeMessage,
        recipients: list[str],
    ) -> SendResult:
        key: PoolKey = (server.host, server.port, server.security.value, credentials.address.casefold())
        slots = self._slots.setdefault(key, asyncio.Semaphore(self._max))
        span = tracer.start_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={
                "server.address": server.host,
                "server.port": server.port,
                "smtp.security": server.security.value,
                "smtp.recipients": len(recipients),
            },
        )
        with SpanScope(span):
            result = await self._send(key, slots, server, credentials, message, recipients, span)
            span.set_attribute("smtp.reply", result.reply)
            return result

    async def _send(
        self,
        key: PoolKey,
        slots: asyncio.Semaphore,
        server: SmtpSettings,
        credentials: Credentials,
        message: MimeMessage,
        recipients: list[str],
        span: Span,
    ) -> SendResult:
        async with slots:
            for attempt in (1, 2):
                connection, reused = await self._checkout(key, server, credentials)
                span.set_attribute("smtp.connection_reused", reused)
                try:
                    result = await self._transact(connection, credentials, message, recipients)
                except _StaleConnection as exc:
                    await self._discard(connection)
                    if reused and attempt == 1:
                        continue  # the server closed an idle session: open a new one
                    raise SmtpTransient(f"connection to {server.host} failed: {exc}") from None
                except BaseException:
                    await self._discard(connection)
                    raise
                connection.last_used = time.monotonic()
                self._idle[key].append(connection)
                return result
        raise AssertionError("unreachable")

    async def _checkout(
        self, key: PoolKey, server: SmtpSettings, credentials: Credentials
    ) -> tuple[Connection, bool]:
        idle = self._idle[key]
        secret = credentials.access_token or credentials.password or ""
        while idle:
            connection = idle.pop()
            fresh = time.monotonic() - connection.last_used < self._idle_timeout_s
            if connection.secret == secret and fresh and connection.client.is_connected:
                return connection, True
            await self._discard(connection)
        return await self._open(server, credentials, secret), False

    def _context_for(self, server: SmtpSettings) -> ssl.SSLContext:
        """The system's CAs (and the configured bundle), plus the tenant's own CA if it has one
        (an on-premises server with a private CA). Verification is never turned off."""
        if not server.ca_pem:
            return self._context
        key = hashlib.sha256(server.ca_pem.encode()).hexdigest()
        context = self._tenant_contexts.get(key)
        if context is None:
            context = tls_context(self._ca_bundle)
            try:
                context.load_verify_locations(cadata=server.ca_pem)
            except (ssl.SSLError, ValueError) as exc:
                raise SmtpPermanent(
                    f"the tenant's SMTP CA certificate cannot be used: {exc}",
                    FailureReason.SMTP_REJECTED,
                    "Set the tenant's smtp.ca_pem to the PEM text of the CA that signed its SMTP server.",
                ) from None
            self._tenant_contexts[key] = context
        return context

    async def _open(self, server: SmtpSettings, credentials: Credentials, secret: str) -> Connection:
        try:
            sock = await self._outbound.open_socket(server.host, server.port, self._timeout_s)
        except DestinationRefused as exc:
            raise DestinationNotAllowed(f"the tenant's SMTP server is not allowed: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise SmtpTransient(
                f"cannot connect to {server.host}:{server.port}: {type(exc).__name__}"
            ) from exc
        client = aiosmtplib.SMTP(
            hostname=server.host,
            sock=sock,
            use_tls=server.security is SmtpSecurity.IMPLICIT_TLS,
            start_tls=server.security is SmtpSecurity.STARTTLS,
            tls_context=self._context_for(server),
            timeout=self._timeout_s,
            local_hostname=self._helo_name,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            sock.close()
            if _certificate_refused(exc):
                raise SmtpPermanent(
                    f"the certificate of {server.host}:{server.port} is not trusted: {exc}",
                    FailureReason.SMTP_REJECTED,
                    "If the server uses a private CA, set the tenant's smtp.ca_pem to that CA's "
                    "certificate; otherwise fix the server's certificate (name, expiry, chain).",
                ) from None
            raise SmtpTransient(
                f"cannot connect to {server.host}:{server.port}: {type(exc).__name__}"
            ) from exc
        connection = Connection(client, secret)
        try:
            if credentials.access_token is not None:
                await _xoauth2(client, credentials.address, credentials.access_token)
            elif credentials.password is not None:
                await client.login(credentials.username or credentials.address, credentials.password)
        except DeliveryError:
            await self._discard(connection)
            raise
        except aiosmtplib.SMTPResponseException as exc:
            await self._discard(connection)
            raise error_of_reply(exc.code, exc.message, during_auth=True) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            await self._discard(connection)
            raise SmtpTransient(f"connection to {server.host} failed: {type(exc).__name__}") from exc
        return connection

    async def _transact(
        self, connection: Connection, credentials: Credentials, message: MimeMessage, recipients: list[str]
    ) -> SendResult:
        client = connection.client
        size = message.size()
        advertised = client.esmtp_extensions.get("size", "")
        if advertised.isdigit() and int(advertised) and size > int(advertised):
            raise SmtpPermanent(
                f"the message is {size} bytes as sent; the server takes at most {advertised}",
                FailureReason.MESSAGE_TOO_LARGE,
                "Scan at a lower resolution or split the document.",
            )
        options = [f"SIZE={size}"] if "size" in client.esmtp_extensions else []
        try:
            await client.mail(credentials.address, options=options)
            rejected: dict[str, str] = {}
            refusal: aiosmtplib.SMTPRecipientRefused | None = None
            for recipient in recipients:
                try:
                    await client.rcpt(recipient)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    rejected[recipient] = f"{exc.code} {exc.message}"
                    refusal = exc
            if len(rejected) == len(recipients):
                await client.rset()
                assert refusal is not None
                raise error_of_reply(refusal.code, refusal.message, during_auth=False)
            reply = await self._stream_data(client, message)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _StaleConnection(type(exc).__name__) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise error_of_reply(exc.code, exc.message, during_auth=False) from None
        except (aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise _StaleConnection(type(exc).__name__) from None
        return SendResult(reply, rejected)

    async def _stream_data(self, client: aiosmtplib.SMTP, message: MimeMessage) -> str:
        """DATA, written a chunk at a time with flow control: a 25 MB scan is never whole in memory.

        aiosmtplib's `data()` takes the whole message as bytes (and copies it twice while
        escaping), so this mirrors its `execute_data_command` on the same protocol object;
        MimeMessage's output needs no escaping (CRLF lines, nothing begins with a dot).
        """
        protocol = client.protocol
        if protocol is None or protocol._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        async with protocol._command_lock:
            protocol._response_pending = True
            protocol.write(b"DATA\r\n")
            start = await protocol.read_response(timeout=self._timeout_s)
            if start.code != 354:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            async for chunk in message.chunks():
                protocol.write(chunk)
                await protocol._drain_helper()
            protocol._response_pending = True
            protocol.write(b".\r\n")
            response = await protocol.read_response(timeout=self._timeout_s)
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return f"{response.code} {response.message}"

    async def _discard(self, connection: Connection) -> None:
        if connection.client.is_connected:
            try:
                await asyncio.wait_for(connection.client.quit(), 5)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                connection.client.close()


class _StaleConnection(Exception):
    pass


def _certificate_refused(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate did not verify."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _xoauth2(client: aiosmtplib.SMTP, address: str, access_token: str) -> None:
    """AUTH XOAUTH2, reading the server's `334` challenge instead of discarding it.

    aiosmtplib's `auth_xoauth2` answers the challenge and raises the final 535 without
    what the challenge said. Gmail's JSON tells a dead token (status 400/401: refresh and
    retry) from a token without the right scope (say which scope is needed).
    """
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    blob = base64.b64encode(f"user={address}\x01auth=Bearer {access_token}\x01\x01".encode())
    response = await client.execute_command(b"AUTH", b"XOAUTH2", blob)
    if response.code == 235:
        return
    if response.code != 334:
        raise aiosmtplib.SMTPResponseException(response.code, response.message)
    challenge = smtp_replies.parse_xoauth2_challenge(response.message)
    final = await client.execute_command(b"")  # the empty answer the protocol asks for
    reply = f"{final.code} {final.message}"
    if challenge is None or challenge.token_rejected:
        raise TokenRejected(reply)
    raise SmtpPermanent(
        f"the SMTP server refused the access token (status {challenge.status}): {reply}",
        FailureReason.AUTHENTICATION_FAILED,
        f"The token must carry the scope {challenge.scope or 'the server asks for'}: check the app's "
        "scopes and sign in again.",
        reply,
    )
