"""SMTP submission for devices that only know "SMTP server, user, password".

An old scanner keeps working after basic authentication is gone: it points at fleetmail
instead of smtp.office365.com, signs in with its own device id and secret (never a
mailbox password) — or, if it cannot AUTH at all, is recognised by its source address
(the CIDR allowlist registered for it) — and each message it sends becomes a job that
mail-service delivers with OAuth. The reply tells the truth: 250 only once the job is in
JetStream, 451 when the bus is unavailable, 5xx with the reason for bad input.

aiosmtpd does the protocol. Its authenticator is synchronous, so it only parses the
credentials here; the device is checked asynchronously right after (`_verified`).
Devices that send HELO instead of EHLO cannot AUTH (they never saw the extension): the
allowlist is how they are let in.

One device cannot take the listener from the others: connections are capped in total and
per source (counted from the accept, before any TLS handshake: `smtp_connections`), a
connection that does not sign in soon is closed, silence and slow data time out
(`smtp_protocol`), a message is spooled
to disk and read part by part (`smtp_data`, `smtp_message`), and a device out of jobs is
refused at MAIL FROM, before it sends its message (its token is taken there, and given back
when no job comes of the envelope).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from fleetmail_contracts.addresses import UNSAFE
from fleetmail_contracts.jobs import JobFunction
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.telemetry import SpanScope
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from .domain import Device, DeviceLogin, legacy_smtp_job_id, retry_after_s, smtp_job_id
from .errors import (
    AttachmentTooLarge,
    AttachmentTypeRefused,
    Conflict,
    GatewayError,
    InvalidJob,
    InvalidRequest,
    OutsideTenantDomains,
    RateLimited,
    SignInHereRequired,
    SubmissionTooLarge,
    TooManyBytesInFlight,
    Transient,
    Unavailable,
)
from .ratelimit import TokenReservation
from .schemas import JobSubmission, summarise
from .settings import GatewaySettings
from .smtp_connections import ConnectionLimits, CountedTls
from .smtp_message import ReadMessage, header_text, read_message
from .smtp_protocol import DeviceSMTP, SpooledEnvelope
from .smtp_rules import address_of, function_of, login_user_of, sent_by_a_user
from .telemetry import tracer
from .use_cases import DeviceDirectory, JobIntake

log = logging.getLogger("job-gateway.smtp")

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
}

REPLIES: tuple[tuple[type[GatewayError], str], ...] = (
    (Unavailable, "451 4.3.0"),
    (RateLimited, "450 4.7.1"),
    (TooManyBytesInFlight, "452 4.3.1"),
    (SubmissionTooLarge, "552 5.3.4"),
    (AttachmentTypeRefused, "554 5.6.1"),
    (AttachmentTooLarge, "552 5.3.4"),
    (OutsideTenantDomains, "550 5.7.1"),
    (SignInHereRequired, "550 5.7.1"),
    (InvalidRequest, "550 5.6.0"),
    (Conflict, "550 5.6.0"),
)
"""The SMTP edge of the error tree: a refusal the device can act on is 5xx, anything else
4xx (a device drops a message for good on a 5xx: never one for fleetmail's own trouble)."""
TEMPORARY_FAILURE = "451 4.3.0"


def _reply_text(text: str) -> str:
    return UNSAFE.sub(" ", text)[:400]


def smtp_reply(error: GatewayError) -> str:
    """An error of the tree as the SMTP reply a device understands."""
    code = next((reply for cls, reply in REPLIES if isinstance(error, cls)), TEMPORARY_FAILURE)
    return f"{code} {_reply_text(error.detail)}"


def server_tls_context(cert: Path, key: Path, minimum: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.minimum_version = TLS_VERSIONS[minimum]
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        # Old devices: OpenSSL's default security level refuses TLS 1.0/1.1 handshakes.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        log.warning("the SMTP listener accepts TLS %s: only for devices that cannot do better", minimum)
    return context


TenantOf = Callable[[str], Awaitable[TenantSettings | None]]
"""The tenant's settings (None: no such tenant)."""


async def _unknown(_tenant_id: str) -> TenantSettings | None:
    return None


HasUserGrant = Callable[[str, str], Awaitable[bool]]
"""Whether the tenant's login user has a live grant (tenant id, address)."""


class SubmissionHandler:
    def __init__(
        self,
        intake: JobIntake,
        directory: DeviceDirectory,
        settings: GatewaySettings,
        tenant_of: TenantOf = _unknown,
        has_user_grant: HasUserGrant | None = None,
    ) -> None:
        """`has_user_grant`: asked when a message's login user has not signed in at its
        device (None: not asked, every such message is taken in)."""
        self.intake = intake
        self.directory = directory
        self.settings = settings
        self.tenant_of = tenant_of
        self.has_user_grant = has_user_grant

    async def check_signed_in_here(self, device: Device, user: str) -> None:
        """A message's From is what the device (or whoever types at it) says: the user's
        grant is used only for a user who signed in at this device. A user with no grant yet
        is taken in (the job waits for the sign-in, asked for on this device's feed); one
        whose grant comes from a sign-in at another device is refused."""
        if await self.directory.signed_in_here(device, user):
            return
        if self.has_user_grant is not None and await self.has_user_grant(device.tenant_id, user):
            raise SignInHereRequired(
                f"{user} has not signed in at this device (their sign-in is another device's): "
                f"sign in as {user} at this device's OAuth screen, then send again"
            )

    def reply(self, error: GatewayError) -> str:
        return smtp_reply(error)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not session.authenticated:
            # aiosmtpd types `peer` as a string; it is the socket's (host, port).
            peer: Any = session.peer
            login = await self.directory.by_address(str(peer[0]) if peer else "")
            if login is None:
                return "530 5.7.0 Authentication required: sign in with the device id and secret"
            session.auth_data = login  # type: ignore[assignment]  # aiosmtpd declares it None
        known: Any = session.auth_data
        # The device's token is taken before its message is read, not after: a device out of
        # jobs does not get to send (and have parsed) 30 MB first, nor a hundred sessions at
        # once. The envelope gives it back if no job comes of it (`DeviceSMTP`).
        if isinstance(known, DeviceLogin):
            device = known.device
            reserved = self.intake.limiter.reserve(f"{device.tenant_id}/{device.device_id}")
            if not isinstance(reserved, TokenReservation):
                return (
                    f"450 4.7.1 this device sent more than {self.intake.limiter.burst} jobs at once; "
                    f"try again in {retry_after_s(reserved)} s"
                )
            assert isinstance(envelope, SpooledEnvelope)
            envelope.rate = reserved
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's reply to what nobody caught names the exception (`500 Error:
        (LookupError) …`) and is permanent: a device would drop its scan for our bug."""
        log.error("SMTP session failed", exc_info=error)
        return f"{TEMPORARY_FAILURE} Temporary failure; try again"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return f"452 4.5.3 Too many recipients (at most {self.settings.max_recipients})"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data
        if not isinstance(login, DeviceLogin):
            return "530 5.7.0 Authentication required"
        assert isinstance(envelope, SpooledEnvelope) and envelope.spool is not None
        spool, hold = envelope.spool, envelope.hold
        message: ReadMessage | None = None

        def decoded(size: int) -> None:
            """The decoded parts are copies on disk beside the spool: held as they are written."""
            if hold is not None:
                hold.grow_to(spool.size + size)

        try:
            # Reading a large message is seconds of work: not on the loop other devices share.
            message = await asyncio.to_thread(
                read_message, spool.file, self.settings.smtp_spool_bytes, decoded
            )
            tenant = await self.tenant_of(login.device.tenant_id)
            submission, message_id = to_job(login, envelope, message, tenant)
            if submission.login_user is not None:
                await self.check_signed_in_here(login.device, submission.login_user)
            ids = None
            if message_id is not None:
                device = login.device
                ids = (
                    smtp_job_id(device.tenant_id, device.device_id, message_id),
                    legacy_smtp_job_id(device.device_id, message_id),
                )
            span = tracer.start_span(
                "smtp receive",
                kind=SpanKind.SERVER,
                attributes={
                    "fleetmail.device": login.device.device_id,
                    "fleetmail.tenant": login.device.tenant_id,
                },
            )
            with SpanScope(span):
                accepted = await self.intake.submit(
                    login.device,
                    submission,
                    message.attachments,
                    channel="smtp",
                    ids=ids,
                    hold=hold,
                    rate_taken=envelope.rate is not None,
                )
            if envelope.rate is not None:
                envelope.rate.keep()
        except GatewayError as error:
            if envelope.rate is not None and not isinstance(error, Transient):
                # A message refused for good still costs its device a job: a device sending
                # bad input in a loop is held back by its rate, not only by the parser.
                envelope.rate.keep()
            return smtp_reply(error)
        except Exception:
            # Never a 5xx for our own trouble: the device would drop the scan for good.
            log.exception("SMTP message from device %s could not be queued", login.device.device_id)
            return f"{TEMPORARY_FAILURE} Temporary failure: the job could not be queued; try again"
        finally:
            if message is not None:
                message.close()
        log.info("SMTP message from device %s queued as job %s", login.device.device_id, accepted.job_id)
        return f"250 2.0.0 OK queued as {accepted.job_id}"


def to_job(
    login: DeviceLogin, envelope: Envelope, message: ReadMessage, tenant: TenantSettings | None = None
) -> tuple[JobSubmission, str | None]:
    """The message as a job: of the function the device's rules give it (else the device's
    own), with the envelope recipients, subject and the text body (its other parts are the
    job's attachments), and — under the login-user From policies — its From as the login
    user (`smtp_rules`); and its Message-ID, if it has one (a resend with the same Message-ID
    is the same job)."""
    subject = header_text(message.headers, "Subject")
    from_header = header_text(message.headers, "From")
    sender = address_of(from_header) if from_header else address_of(str(envelope.mail_from or ""))
    recipients = list(envelope.rcpt_tos)
    by_user = sent_by_a_user(tenant, sender, login.device.machine_address, login.rules)
    function = function_of(login.rules, login.function, recipients, subject, sender or from_header, by_user)
    fields: dict[str, Any] = {
        "function": function,
        "to": recipients,
        "subject": subject or None,
        "body": message.body,
        "login_user": login_user_of(tenant, function, sender),
    }
    message_id = header_text(message.headers, "Message-ID") or None
    if function is JobFunction.INTERNET_FAX_TX and not login.device.machine_address:
        fields["machine_address"] = envelope.mail_from
    try:
        return JobSubmission(**fields), message_id
    except ValidationError as exc:
        raise InvalidJob(summarise(exc.errors())) from None


class SmtpListener:
    """The configured SMTP ports: none without a certificate, unless the LAN port is set.
    Built with the app, opened by `start` (a start hook of the service), closed by `close`."""

    def __init__(
        self,
        settings: GatewaySettings,
        intake: JobIntake,
        directory: DeviceDirectory,
        tenant_of: TenantOf = _unknown,
        has_user_grant: HasUserGrant | None = None,
    ) -> None:
        self.settings = settings
        self.handler = SubmissionHandler(intake, directory, settings, tenant_of, has_user_grant)
        self.limits = ConnectionLimits(
            settings.smtp_max_connections, settings.smtp_max_connections_per_address
        )
        self.servers: list[asyncio.Server] = []
        self.handshakes: set[asyncio.Task[None]] = set()

    @property
    def min_tls(self) -> str | None:
        """The oldest TLS accepted, or None when no TLS port can open."""
        return self.settings.smtp_min_tls if self.settings.smtp_tls_cert else None

    def _plan(self) -> list[tuple[int, dict[str, Any], ssl.SSLContext | None]]:
        settings = self.settings
        context = None
        if settings.smtp_tls_cert and settings.smtp_tls_key:
            context = server_tls_context(settings.smtp_tls_cert, settings.smtp_tls_key, settings.smtp_min_tls)
        elif settings.smtp_starttls_port or settings.smtp_tls_port:
            log.warning(
                "SMTP listener: no certificate (FLEETMAIL_GATEWAY_SMTP_TLS_CERT/_KEY), so ports %s and %s stay closed",
                settings.smtp_starttls_port,
                settings.smtp_tls_port,
            )
        plan: list[tuple[int, dict[str, Any], ssl.SSLContext | None]] = []
        if context is not None and settings.smtp_starttls_port:
            plan.append(
                (settings.smtp_starttls_port, {"tls_context": context, "require_starttls": True}, None)
            )
        if context is not None and settings.smtp_tls_port:
            plan.append((settings.smtp_tls_port, {"auth_require_tls": False}, context))
        if settings.smtp_plain_port:
            log.warning(
                "SMTP listener: port %s takes mail without TLS (a LAN only)", settings.smtp_plain_port
            )
            plan.append((settings.smtp_plain_port, {"auth_require_tls": False}, None))
        return plan

    async def start(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        host = settings.smtp_host or settings.host
        common: dict[str, Any] = {
            "data_size_limit": settings.max_attachment_bytes * 4 // 3 + 1024 * 1024,
            "hostname": settings.smtp_hostname,
            "ident": "fleetmail",
            "timeout": settings.smtp_idle_timeout_s,
            "command_call_limit": settings.smtp_command_call_limit,
        }
        try:
            for port, options, implicit in self._plan():

                def factory(options: dict[str, Any] = options) -> DeviceSMTP:
                    return DeviceSMTP(self.handler, self.limits, **common, **options)

                protocol: Callable[[], asyncio.BaseProtocol] = factory
                if implicit is not None:
                    # Counted from the accept, not from the end of the handshake (see CountedTls).
                    protocol = partial(
                        CountedTls,
                        self.limits,
                        implicit,
                        settings.smtp_tls_handshake_timeout_s,
                        factory,
                        self.handshakes,
                    )
                self.servers.append(await loop.create_server(protocol, host, port))
                log.info("SMTP listener on %s:%s%s", host, port, " (implicit TLS)" if implicit else "")
        except OSError as exc:
            await self.close()
            raise RuntimeError(f"the SMTP listener cannot open its port: {exc}") from exc

    async def close(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            server.close()
        for handshake in list(self.handshakes):
            handshake.cancel()
        for server in servers:
            await server.wait_closed()
