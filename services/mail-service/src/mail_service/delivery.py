"""Delivering one job: sender, token, documents, MIME, SMTP. Raises mail-service errors."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from faststream.nats import NatsBroker
from fleetmail_contracts.credentials import (
    SMTP_CREDENTIALS_SUBJECT,
    SmtpCredentialsReply,
    SmtpCredentialsRequest,
)
from fleetmail_contracts.jobs import JobBase, JobFunction
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import (
    ACCESS_TOKEN_SUBJECT,
    AccessTokenOutcome,
    AccessTokenReply,
    AccessTokenRequest,
    Principal,
    PrincipalKind,
    Provider,
)
from fleetmail_runtime.tenants import TenantDirectory, UnknownTenant
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from .adapters.smtp import Credentials, SendResult, SmtpDelivery, TokenRejected
from .domain.compose import compose, message_id
from .domain.mime import AttachmentSource, MimeMessage
from .domain.sender import Sender, resolve_sender
from .errors import (
    AwaitingAuthorization,
    InvalidJob,
    ReauthorizationNeeded,
    SmtpPermanent,
    TokenUnavailable,
)

CHUNK = 1024 * 1024
TOKEN_MEMORY_S = 30.0
BAD_PASSWORD_REMEDY = (
    "The SMTP server refused the tenant's stored username and password: store the right ones "
    "with the tenant's credentials, or switch the tenant to OAuth 2.0."
)


@dataclass(frozen=True)
class Delivered:
    sender: str
    message_id: str
    result: SendResult
    accepted: tuple[str, ...]


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
        broker: NatsBroker,
        tenants: TenantDirectory,
        smtp: SmtpDelivery,
        token_timeout_s: float,
        clock: Callable[[], datetime],
        size_limits: Mapping[Provider, int] | None = None,
    ) -> None:
        self.broker = broker
        self.size_limits = dict(size_limits or {})
        self.tenants = tenants
        self.smtp = smtp
        self.token_timeout_s = token_timeout_s
        self.clock = clock
        self._tokens: dict[str, tuple[AccessTokenReply, float]] = {}
        self._smtp_credentials: dict[str, tuple[SmtpCredentialsReply, float]] = {}

    async def has_grant(self, principal: Principal) -> bool:
        """Whether token-service can give a token for this principal now."""
        try:
            await self._request_token(principal, False, None)
        except (AwaitingAuthorization, ReauthorizationNeeded, TokenUnavailable):
            return False
        return True

    async def _stored_credentials(self, tenant_id: str) -> SmtpCredentialsReply:
        """The tenant's SMTP username and password (OAuth 2.0 off), held briefly in memory."""
        cached = self._smtp_credentials.get(tenant_id)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        request = SmtpCredentialsRequest(tenant_id=tenant_id)
        try:
            response = await self.broker.request(
                request, SMTP_CREDENTIALS_SUBJECT, timeout=self.token_timeout_s
            )
        except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
            raise TokenUnavailable(f"token-service did not answer: {type(exc).__name__}") from exc
        reply = SmtpCredentialsReply.model_validate_json(response.body)
        self._smtp_credentials[tenant_id] = (reply, time.monotonic() + TOKEN_MEMORY_S)
        return reply

    def forget_token(self, tenant_id: str, address: str) -> None:
        """A grant changed (deleted, refreshed, dead): the next job asks token-service again."""
        self._tokens.pop(f"{tenant_id}|{address.casefold()}", None)

    async def _token(self, principal: Principal, force_refresh: bool, job_id: str) -> AccessTokenReply:
        # A short memory of the last token per sender spares token-service a request per
        # job; token events clear it at once when a grant is deleted or replaced.
        key = f"{principal.tenant_id}|{principal.address.casefold()}"
        cached = self._tokens.get(key)
        if cached is not None and not force_refresh and time.monotonic() < cached[1]:
            return cached[0]
        reply = await self._request_token(principal, force_refresh, job_id)
        self._tokens[key] = (reply, time.monotonic() + TOKEN_MEMORY_S)
        return reply

    async def _request_token(
        self, principal: Principal, force_refresh: bool, job_id: str
    ) -> AccessTokenReply:
        request = AccessTokenRequest(principal=principal, force_refresh=force_refresh, job_id=job_id)
        try:
            response = await self.broker.request(request, ACCESS_TOKEN_SUBJECT, timeout=self.token_timeout_s)
        except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
            raise TokenUnavailable(f"token-service did not answer: {type(exc).__name__}") from exc
        reply = AccessTokenReply.model_validate_json(response.body)
        if reply.outcome is AccessTokenOutcome.GRANTED and reply.access_token:
            return reply
        if reply.outcome is AccessTokenOutcome.NO_GRANT and principal.kind is PrincipalKind.USER:
            raise AwaitingAuthorization(principal.address)
        if reply.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE:
            raise TokenUnavailable(
                reply.detail or "the identity provider is unavailable", reply.retry_after_s
            )
        raise ReauthorizationNeeded(reply.detail or f"no usable grant for {principal.address}")

    @asynccontextmanager
    async def _attachments(self, job: JobBase) -> AsyncIterator[list[AttachmentSource]]:
        """Each document fetched from the Object Store into a temporary file, its checksum
        verified; the MIME writer then encodes it from there a chunk at a time."""
        if not job.attachments:
            yield []
            return
        store = await self.broker.object_storage(ATTACHMENTS_BUCKET)
        with contextlib.ExitStack() as files:
            sources = []
            for ref in job.attachments:
                spool = files.enter_context(tempfile.TemporaryFile())
                try:
                    await store.get(ref.object_name, writeinto=spool)
                except NotFoundError as exc:
                    raise InvalidJob(
                        f"attachment {ref.filename} is no longer stored", FailureReason.ATTACHMENT_MISSING
                    ) from exc
                if _sha256_of(spool) != ref.sha256:
                    raise InvalidJob(
                        f"attachment {ref.filename} does not match its checksum",
                        FailureReason.ATTACHMENT_MISSING,
                    )
                size = spool.seek(0, 2)
                sources.append(AttachmentSource(ref.filename, ref.content_type, _reader(spool), size))
            yield sources

    async def tenant(self, tenant_id: str) -> TenantSettings:
        try:
            return await self.tenants.get(tenant_id)
        except UnknownTenant as exc:
            raise InvalidJob(str(exc), FailureReason.TENANT_UNKNOWN) from exc

    def sender_of(self, job: JobBase, function: JobFunction, tenant: TenantSettings) -> Sender:
        return resolve_sender(job, function, tenant)

    async def deliver(
        self, job: JobBase, function: JobFunction, tenant: TenantSettings, sender: Sender
    ) -> Delivered:
        async with self._attachments(job) as attachments:
            message, recipients = compose(job, function, sender.address, attachments, self.clock())
            self._check_size(tenant, message)
            if not tenant.oauth_enabled:
                return await self._send_basic(job, tenant, sender, message, recipients)
            principal = Principal(tenant_id=tenant.tenant_id, kind=sender.kind, address=sender.address)
            return await self._send(job, tenant, sender, principal, message, recipients)

    def _check_size(self, tenant: TenantSettings, message: MimeMessage) -> None:
        """The provider's message size limit, checked before anything is sent."""
        limit = self.size_limits.get(tenant.provider)
        size = message.size()
        if limit is not None and size > limit:
            raise InvalidJob(
                f"the message is {size / 1e6:.1f} MB as sent (attachments grow by a third in "
                f"transfer), over the {limit / 1e6:.1f} MB limit for {tenant.provider.value}: "
                "scan at a lower resolution or split the document",
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
    ) -> Delivered:
        server = tenant.effective_smtp()
        token = await self._token(principal, False, job.job_id)
        try:
            result = await self.smtp.send(
                server, Credentials(sender.address, token.access_token), message, recipients
            )
        except TokenRejected:
            token = await self._token(principal, True, job.job_id)
            try:
                result = await self.smtp.send(
                    server, Credentials(sender.address, token.access_token), message, recipients
                )
            except TokenRejected as again:
                raise ReauthorizationNeeded(
                    f"the SMTP server refused a freshly refreshed token for {sender.address}: {again.smtp_reply}"
                ) from None
        return self._delivered(job, sender, result, recipients)

    async def _send_basic(
        self,
        job: JobBase,
        tenant: TenantSettings,
        sender: Sender,
        message: MimeMessage,
        recipients: list[str],
    ) -> Delivered:
        """OAuth 2.0 off (the device's default): PLAIN/LOGIN with the tenant's stored
        credentials, or no AUTH when none are stored."""
        stored = await self._stored_credentials(tenant.tenant_id)
        credentials = Credentials(sender.address, password=stored.password, username=stored.username)
        try:
            result = await self.smtp.send(tenant.effective_smtp(), credentials, message, recipients)
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
        return Delivered(sender.address, message_id(job.job_id), result, accepted)
