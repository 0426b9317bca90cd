"""SMTP delivery through aiosmtplib: STARTTLS or implicit TLS, XOAUTH2 or PLAIN/LOGIN.

Library failures are translated into mail-service's errors using the shared reply table.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import SmtpSecurity, SmtpSettings
from fleetmail_runtime import smtp_replies
from fleetmail_runtime.smtp_replies import ReplyClass

from ..errors import DeliveryError, SmtpPermanent, SmtpTransient


class TokenRejected(DeliveryError):
    """The server refused the access token: refresh it once and try again."""

    def __init__(self, smtp_reply: str) -> None:
        super().__init__(f"the SMTP server refused the access token: {smtp_reply}")
        self.smtp_reply = smtp_reply


@dataclass(frozen=True)
class Credentials:
    address: str
    access_token: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials({self.address})"


@dataclass(frozen=True)
class SendResult:
    reply: str
    rejected: dict[str, str]


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _translate(code: int, message: str, during_auth: bool) -> DeliveryError:
    reply = f"{code} {message}"
    klass, known = smtp_replies.classify(code, message)
    if klass is ReplyClass.TOKEN_REJECTED and during_auth:
        return TokenRejected(reply)
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


class SmtpDelivery:
    def __init__(self, context: ssl.SSLContext, timeout_s: float, helo_name: str) -> None:
        self._context = context
        self._timeout_s = timeout_s
        self._helo_name = helo_name

    async def send(
        self,
        server: SmtpSettings,
        credentials: Credentials,
        message: EmailMessage,
        recipients: list[str],
    ) -> SendResult:
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.security is SmtpSecurity.IMPLICIT_TLS,
            start_tls=server.security is SmtpSecurity.STARTTLS,
            tls_context=self._context,
            timeout=self._timeout_s,
            local_hostname=self._helo_name,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpTransient(
                f"cannot connect to {server.host}:{server.port}: {type(exc).__name__}"
            ) from exc
        try:
            try:
                if credentials.access_token is not None:
                    await client.auth_xoauth2(credentials.address, credentials.access_token)
                elif credentials.password is not None:
                    await client.login(credentials.address, credentials.password)
            except aiosmtplib.SMTPResponseException as exc:
                raise _translate(exc.code, exc.message, during_auth=True) from None
            try:
                rejected, reply = await client.send_message(
                    message, sender=credentials.address, recipients=recipients
                )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                first = exc.recipients[0]
                raise _translate(first.code, first.message, during_auth=False) from None
            except aiosmtplib.SMTPResponseException as exc:
                raise _translate(exc.code, exc.message, during_auth=False) from None
            return SendResult(reply, {r: f"{resp.code} {resp.message}" for r, resp in rejected.items()})
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise SmtpTransient(f"connection to {server.host} failed: {type(exc).__name__}") from exc
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
