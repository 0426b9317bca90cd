"""Delivering one job: sender, token, documents, MIME, then the tenant's transport (SMTP,
Microsoft Graph or the Gmail API: the same message, each token for its resource). Raises
mail-service's errors.

The use case behind the handler edge; everything it talks to is a port (`ports.py`), so
it runs on the real adapters in the service and on fakes in unit tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import IO

from fleetmail_contracts.credentials import SmtpCredentialsReply
from fleetmail_contracts.jobs import JobBase, JobFunction
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import Principal, Provider, TokenResource
from fleetmail_contracts.transports import TRANSPORT_RESOURCE, Transport
from fleetmail_runtime.tenants import UnknownTenant

from .domain.compose import compose, message_id
from .domain.decisions import Delivered
from .domain.limits import MailboxLimits, mailbox_key, parts
from .domain.mime import AttachmentSource, MimeMessage
from .domain.sender import Sender, resolve_sender
from .domain.tokens import access_token_of, token_not_accepted_remedy
from .errors import (
    AttachmentsUnavailable,
    ConfigurationError,
    DeliveryError,
    InvalidJob,
    SentMeanwhile,
    SmtpPermanent,
    TokenNotAccepted,
    TokenRejected,
)
from .pacing import MailboxGate, Paced
from .ports import (
    AttachmentStore,
    Credentials,
    DeliveryLedger,
    MailTransport,
    SendResult,
    SentItems,
    TenantReader,
    TokenClient,
)

log = logging.getLogger("mail-service")
CHUNK = 1024 * 1024
Submit = Callable[[SmtpSettings, Credentials, MimeMessage, list[str]], Awaitable[SendResult]]
TOKEN_MEMORY = timedelta(seconds=30)
TRANSPORT_NAME = {Transport.GRAPH: "Microsoft Graph", Transport.GMAIL_API: "the Gmail API"}
SENT_MAIL = {Transport.GRAPH: "Sent Items", Transport.GMAIL_API: "the account's sent mail"}
LOOKUP_MEMORY = timedelta(hours=1)
"""How long a mailbox that cannot be looked up (its token may not read it) is not asked again;
a token event for its grant (a new sign-in, perhaps with more scopes) ends it sooner."""
BAD_PASSWORD_REMEDY = (
    "The SMTP server refused the tenant's stored username and password: store the right ones "
    "with the tenant's credentials (a Google account needs an app password, its own password "
    "is refused), or switch the tenant to OAuth 2.0."
)


def _sha256_of(spool: IO[bytes]) -> str:
    spool.seek(0)
    digest = hashlib.sha256()
    while block := spool.read(CHUNK):
        digest.update(block)
    return digest.hexdigest()


def _reader(spool: IO[bytes]) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        spool.seek(0)
        while block := spool.read(CHUNK):
            yield block

    return chunks


class Deliverer:
    def __init__(
        self,
        tenants: TenantReader,
        tokens: TokenClient,
        transport: MailTransport,
        attachments: AttachmentStore,
        clock: Callable[[], datetime],
        size_limits: Mapping[Provider, int],
        gate: MailboxGate | None = None,
        provider_limits: Mapping[Provider, MailboxLimits] | None = None,
        ledger: DeliveryLedger | None = None,
        *,
        apis: Mapping[Transport, MailTransport] | None = None,
        api_limits: Mapping[Transport, MailboxLimits] | None = None,
        api_size_limits: Mapping[Transport, int] | None = None,
        sent_items: Mapping[Transport, SentItems] | None = None,
    ) -> None:
        self.tenants = tenants
        self.tokens = tokens
        self.transport = transport
        self.attachments = attachments
        self.clock = clock
        self.size_limits = dict(size_limits)
        self.gate = gate
        self.provider_limits = dict(provider_limits or {})
        self.ledger = ledger
        self.apis = dict(apis or {})
        self.api_limits = dict(api_limits or {})
        self.api_size_limits = dict(api_size_limits or {})
        self.sent_items = dict(sent_items or {})
        self._no_lookup: dict[str, datetime] = {}
        # A short memory of the last token per sender spares token-service a request per
        # job; token events clear it at once when a grant is deleted or replaced.
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._smtp_credentials: dict[str, tuple[SmtpCredentialsReply, datetime]] = {}

    async def tenant(self, tenant_id: str) -> TenantSettings:
        try:
            return await self.tenants.get(tenant_id)
        except UnknownTenant as exc:
            raise InvalidJob(str(exc), FailureReason.TENANT_UNKNOWN) from exc

    def sender_of(self, job: JobBase, function: JobFunction, tenant: TenantSettings) -> Sender:
        return resolve_sender(job, function, tenant)

    async def has_grant(self, principal: Principal) -> bool:
        """Whether token-service can give a token for this principal now (for the resource of
        its tenant's transport: asking for another would redeem the grant for nothing)."""
        tenant = self.tenants.cached(principal.tenant_id)
        resource = TRANSPORT_RESOURCE[tenant.transport] if tenant is not None else TokenResource.SMTP
        try:
            reply = await self.tokens.access_token(
                principal, force_refresh=False, job_id=None, resource=resource
            )
            access_token_of(reply, principal)
        except DeliveryError:
            return False
        return True

    def forget_token(self, tenant_id: str, address: str) -> None:
        """A grant changed (deleted, refreshed, dead): the next job asks token-service again."""
        for resource in TokenResource:
            self._tokens.pop(f"{tenant_id}|{address.casefold()}|{resource}", None)
        self._no_lookup.pop(mailbox_key(tenant_id, address), None)

    def transport_of(self, tenant: TenantSettings) -> MailTransport:
        if tenant.transport is Transport.SMTP:
            return self.transport
        if not tenant.oauth_enabled:
            raise ConfigurationError(f"transport {tenant.transport.value} sends only with OAuth 2.0 on")
        api = self.apis.get(tenant.transport)
        if api is None:
            raise ConfigurationError(f"this deployment has no {tenant.transport.value} transport")
        return api

    def limits_of(self, tenant: TenantSettings) -> MailboxLimits | None:
        """The sending mailbox's limits: the provider's (or its API's) defaults, and what the
        tenant set."""
        if tenant.transport is Transport.SMTP:
            default = self.provider_limits.get(tenant.provider)
        else:
            default = self.api_limits.get(tenant.transport)
        if default is None:
            return None
        own = tenant.sending_limits
        concurrent = own.concurrent_submissions or default.concurrent
        interval_s = 60 / own.messages_per_minute if own.messages_per_minute else default.interval_s
        per_message = own.recipients_per_message or default.recipients_per_message
        return replace(
            default,
            concurrent=concurrent,
            interval_s=interval_s,
            recipients_per_message=per_message,
            daily_quota=own.daily_quota or default.daily_quota,
        )

    async def deliver(
        self,
        job: JobBase,
        function: JobFunction,
        tenant: TenantSettings,
        sender: Sender,
        paced: Paced | None = None,
        *,
        redelivered: bool = False,
    ) -> Delivered:
        """`redelivered`: the job may have been sent before a crash (a redelivery, or a job
        put back): where the transport can tell (Graph's Sent Items; the Gmail API's search, with
        a token that may read), it is not sent twice."""
        transport = self.transport_of(tenant)
        async with self._attachments(job) as attachments:
            message, recipients = compose(job, function, sender.shown, attachments, self.clock())
            self._check_size(tenant, message)
            limits = self.limits_of(tenant)
            split = parts(recipients, limits.recipients_per_message) if limits else [recipients]
            if len(split) == 1:
                submit = self._submitter(tenant, sender, paced, job.job_id, transport)
                if redelivered and (found := await self._sent_before(job, tenant, sender, recipients, paced)):
                    return found
                return await self._send_part(job, tenant, sender, message, recipients, submit)
            return await self._send_parts(job, tenant, sender, message, split, paced, transport)

    async def _sent_before(
        self,
        job: JobBase,
        tenant: TenantSettings,
        sender: Sender,
        recipients: list[str],
        paced: Paced | None,
    ) -> Delivered | None:
        """The job found in the mailbox's sent mail: the API accepted it before a crash kept
        the ledger from recording it. A refused token is refreshed once, as for a send; the
        lookup is a request to the mailbox like a send, so it goes through the mailbox's gate
        (a turn and a place, no quota). A mailbox that cannot tell (a Gmail token with
        `gmail.send` only) is not asked again for `LOOKUP_MEMORY`: the job is sent again."""
        sent_items = self.sent_items.get(tenant.transport)
        mailbox = mailbox_key(tenant.tenant_id, sender.address)
        until = self._no_lookup.get(mailbox)
        if sent_items is None or (until is not None and self.clock() < until):
            return None
        principal = Principal(tenant_id=tenant.tenant_id, kind=sender.kind, address=sender.address)
        resource = TRANSPORT_RESOURCE[tenant.transport]
        mid = message_id(job.job_id)

        async def look_up(access_token: str) -> bool | None:
            async with self._submission(tenant, sender, paced, job.job_id, 0, counted=False):
                return await sent_items.sent(Credentials(sender.address, access_token), mid)

        try:
            found = await look_up(await self._access_token(principal, False, job.job_id, resource))
        except TokenRejected:
            try:
                found = await look_up(await self._access_token(principal, True, job.job_id, resource))
            except TokenRejected as again:
                raise self._not_accepted(tenant, sender, again) from None
        where, api = SENT_MAIL[tenant.transport], TRANSPORT_NAME[tenant.transport]
        if found is None:
            log.warning(
                "job %s: %s cannot look up %s of %s with the token given: it is sent again",
                job.job_id,
                api,
                where,
                sender.address,
            )
            self._no_lookup[mailbox] = self.clock() + LOOKUP_MEMORY
            return None
        self._no_lookup.pop(mailbox, None)
        if not found:
            return None
        log.info("job %s was found in %s: not sent again", job.job_id, where)
        reply = f"found in {where} (accepted by {api} before a restart)"
        return Delivered(sender.address, mid, reply, tuple(recipients), ())

    @staticmethod
    def _not_accepted(tenant: TenantSettings, sender: Sender, again: TokenRejected) -> TokenNotAccepted:
        """Refused twice, the token does not fit the server (audience, scope, consent): the
        grant itself is alive, or the refresh would have failed, so that is a setting to fix,
        not a sign-in to repeat."""
        where = "the SMTP server" if tenant.transport is Transport.SMTP else TRANSPORT_NAME[tenant.transport]
        return TokenNotAccepted(
            f"{where} refused a token the identity provider had just issued for "
            f"{sender.address}: {again.smtp_reply}",
            token_not_accepted_remedy(tenant.provider, tenant.identity.app_only, tenant.transport),
            again.smtp_reply,
        )

    async def _send_parts(
        self,
        job: JobBase,
        tenant: TenantSettings,
        sender: Sender,
        message: MimeMessage,
        split: list[list[str]],
        paced: Paced | None,
        transport: MailTransport,
    ) -> Delivered:
        """More recipients than the provider takes in one message: the same message in several
        submissions, each recorded in the delivery ledger under its own key as it is accepted,
        so a redelivered job sends only the parts not sent yet. A part's key names its
        recipients, not its place: if the cap changed while the job waited, the new parts do
        not pass for old ones (which would leave recipients out); at worst some are sent twice."""
        accepted: list[str] = []
        rejected: list[str] = []
        reply = ""
        for part in split:
            key = part_key(job.job_id, part)
            if self.ledger is not None and await self.ledger.already_delivered(key):
                accepted.extend(part)
                continue
            submit = self._submitter(tenant, sender, paced, key, transport)
            try:
                delivered = await self._send_part(job, tenant, sender, message, part, submit)
            except SentMeanwhile:
                accepted.extend(part)
                continue
            if self.ledger is not None:
                await self.ledger.record(key, delivered.message_id)
            accepted.extend(delivered.accepted)
            rejected.extend(delivered.rejected)
            reply = delivered.smtp_reply
        reply = f"{reply} ({len(split)} messages of at most {len(split[0])} recipients)"
        return Delivered(sender.address, message_id(job.job_id), reply, tuple(accepted), tuple(rejected))

    async def _send_part(
        self,
        job: JobBase,
        tenant: TenantSettings,
        sender: Sender,
        message: MimeMessage,
        recipients: list[str],
        submit: Submit,
    ) -> Delivered:
        if not tenant.oauth_enabled:
            return await self._send_basic(job, tenant, sender, message, recipients, submit)
        principal = Principal(tenant_id=tenant.tenant_id, kind=sender.kind, address=sender.address)
        return await self._send(job, tenant, sender, principal, message, recipients, submit)

    def _submitter(
        self,
        tenant: TenantSettings,
        sender: Sender,
        paced: Paced | None,
        ledger_key: str,
        transport: MailTransport,
    ) -> Submit:
        """The transport, entered only when the mailbox admits the message (its credentials are
        ready before: a job without a token takes no turn)."""

        async def submit(
            server: SmtpSettings, credentials: Credentials, message: MimeMessage, recipients: list[str]
        ) -> SendResult:
            async with self._submission(tenant, sender, paced, ledger_key, len(recipients)):
                return await transport.send(server, credentials, message, recipients)

        return submit

    @asynccontextmanager
    async def _submission(
        self,
        tenant: TenantSettings,
        sender: Sender,
        paced: Paced | None,
        ledger_key: str,
        recipients: int,
        *,
        counted: bool = True,
    ) -> AsyncIterator[None]:
        limits = self.limits_of(tenant)
        if self.gate is None or limits is None:
            yield
            return
        async with self.gate.submission(
            mailbox_key(tenant.tenant_id, sender.address), limits, paced, recipients, counted=counted
        ) as waited:
            # While it waited, JetStream may have given the job to another replica, which sent it.
            if waited and self.ledger is not None and await self.ledger.already_delivered(ledger_key):
                raise SentMeanwhile(ledger_key)
            yield

    async def release(self, job: JobBase) -> None:
        """The job is final (sent and in the ledger): its documents are deleted. One the store
        cannot delete now is left to the attachment sweep, which finds it held by no job."""
        if not job.attachments:
            return
        try:
            await self.attachments.discard(job.attachments)
        except AttachmentsUnavailable as exc:
            log.warning("job %s: its documents are left to the sweep (%s)", job.job_id, exc)

    async def _access_token(
        self,
        principal: Principal,
        force_refresh: bool,
        job_id: str,
        resource: TokenResource = TokenResource.SMTP,
    ) -> str:
        key = f"{principal.tenant_id}|{principal.address.casefold()}|{resource}"
        now = self.clock()
        remembered = self._tokens.get(key)
        if remembered is not None and not force_refresh and now < remembered[1]:
            return remembered[0]
        reply = await self.tokens.access_token(
            principal, force_refresh=force_refresh, job_id=job_id, resource=resource
        )
        access_token = access_token_of(reply, principal)
        self._tokens[key] = (access_token, now + TOKEN_MEMORY)
        return access_token

    async def _stored_credentials(self, tenant_id: str) -> SmtpCredentialsReply:
        """The tenant's SMTP username and password (OAuth 2.0 off), held briefly in memory."""
        now = self.clock()
        remembered = self._smtp_credentials.get(tenant_id)
        if remembered is not None and now < remembered[1]:
            return remembered[0]
        reply = await self.tokens.smtp_credentials(tenant_id)
        self._smtp_credentials[tenant_id] = (reply, now + TOKEN_MEMORY)
        return reply

    @asynccontextmanager
    async def _attachments(self, job: JobBase) -> AsyncIterator[list[AttachmentSource]]:
        """Each document fetched into a temporary file, its checksum verified; the MIME writer
        then encodes it from there a chunk at a time."""
        if not job.attachments:
            yield []
            return
        with contextlib.ExitStack() as files:
            sources = []
            for ref in job.attachments:
                spool = files.enter_context(tempfile.TemporaryFile())
                await self.attachments.fetch(ref, spool)
                if _sha256_of(spool) != ref.sha256:
                    raise InvalidJob(
                        f"attachment {ref.filename} does not match its checksum",
                        FailureReason.ATTACHMENT_MISSING,
                    )
                size = spool.seek(0, 2)
                sources.append(AttachmentSource(ref.filename, ref.content_type, _reader(spool), size))
            yield sources

    def _check_size(self, tenant: TenantSettings, message: MimeMessage) -> None:
        """The provider's (or its API's) message size limit, checked before anything is sent."""
        own = tenant.sending_limits.max_message_bytes
        api = self.api_size_limits.get(tenant.transport)
        limit = own or api or self.size_limits.get(tenant.provider)
        size = message.size()
        if limit is not None and size > limit:
            whose = " set for this mailbox" if own else ""
            way = tenant.transport.value if api and not own else tenant.provider.value
            raise InvalidJob(
                f"too large for this mailbox: the message is {size / 1e6:.1f} MB as sent "
                f"(attachments grow by a third in transfer), over the {limit / 1e6:.1f} MB limit "
                f"for {way}{whose}: scan at a lower resolution or "
                "split the document",
                FailureReason.MESSAGE_TOO_LARGE,
            )

    async def _send(
        self,
        job: JobBase,
        tenant: TenantSettings,
        sender: Sender,
        principal: Principal,
        message: MimeMessage,
        recipients: list[str],
        submit: Submit,
    ) -> Delivered:
        """XOAUTH2, or a mail API's bearer token for its resource. A refused token is refreshed
        once (token-service asked to refresh, not to hand out what it holds) and the message
        sent again; refused twice: `TokenNotAccepted`."""
        server = tenant.effective_smtp()
        resource = TRANSPORT_RESOURCE[tenant.transport]
        access_token = await self._access_token(principal, False, job.job_id, resource)
        try:
            result = await submit(server, Credentials(sender.address, access_token), message, recipients)
        except TokenRejected:
            access_token = await self._access_token(principal, True, job.job_id, resource)
            try:
                result = await submit(server, Credentials(sender.address, access_token), message, recipients)
            except TokenRejected as again:
                raise self._not_accepted(tenant, sender, again) from None
        return self._delivered(job, sender, result, recipients)

    async def _send_basic(
        self,
        job: JobBase,
        tenant: TenantSettings,
        sender: Sender,
        message: MimeMessage,
        recipients: list[str],
        submit: Submit,
    ) -> Delivered:
        """OAuth 2.0 off (the device's default): PLAIN/LOGIN with the tenant's stored
        credentials, or no AUTH when none are stored."""
        stored = await self._stored_credentials(tenant.tenant_id)
        credentials = Credentials(sender.address, password=stored.password, username=stored.username)
        try:
            result = await submit(tenant.effective_smtp(), credentials, message, recipients)
        except TokenRejected as exc:
            # A plain 535 on PLAIN/LOGIN: the password is wrong, and no refresh will help.
            raise SmtpPermanent(
                f"the SMTP server refused the tenant's SMTP credentials: {exc.smtp_reply}",
                FailureReason.AUTHENTICATION_FAILED,
                BAD_PASSWORD_REMEDY,
                exc.smtp_reply,
            ) from None
        return self._delivered(job, sender, result, recipients)

    @staticmethod
    def _delivered(job: JobBase, sender: Sender, result: SendResult, recipients: list[str]) -> Delivered:
        accepted = tuple(r for r in recipients if r not in result.rejected)
        return Delivered(
            sender.address, message_id(job.job_id), result.reply, accepted, tuple(result.rejected)
        )


def part_key(job_id: str, recipients: list[str]) -> str:
    """The delivery-ledger key of one part of a split message: the job and its recipients."""
    digest = hashlib.sha256("\n".join(sorted(r.lower() for r in recipients)).encode()).hexdigest()[:16]
    return f"{job_id}.part-{digest}"
