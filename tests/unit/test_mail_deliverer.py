"""Delivering one job with fake ports: tokens, the one forced refresh after a 535, documents,
size limits, stored SMTP credentials. No servers, an injected clock, no sleeping."""

from __future__ import annotations

import hashlib

import pytest
from fleetmail_contracts.credentials import SmtpCredentialsReply
from fleetmail_contracts.jobs import AttachmentRef, JobFunction, SendScanToEmail, SendScanToMe
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import FromPolicy, SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenReply,
    Principal,
    PrincipalKind,
    Provider,
)
from mail_service.delivery import Deliverer
from mail_service.domain.tokens import token_not_accepted_remedy
from mail_service.errors import (
    AttachmentsUnavailable,
    AwaitingAuthorization,
    ConfigurationError,
    InvalidJob,
    ReauthorizationNeeded,
    SmtpPermanent,
    TokenNotAccepted,
    TokenUnavailable,
)

from tests.fakes.mail import (
    FakeAttachments,
    FakeClock,
    FakeMailServer,
    FakeTenants,
    FakeTokenClient,
    FakeTransport,
)

ADMIN = "admin@acme.example"
SMTP = SmtpSettings(host="smtp.acme.test", port=587)
OAUTH = TenantSettings(tenant_id="acme", oauth_enabled=True, administrator_address=ADMIN, smtp=SMTP)


class World:
    """A deliverer and the fakes behind it."""

    def __init__(self, *tenants: TenantSettings, limit: int = 10_000_000) -> None:
        self.clock = FakeClock()
        self.tokens = FakeTokenClient()
        self.server = FakeMailServer()
        self.transport = FakeTransport(self.server)
        self.attachments = FakeAttachments()
        self.deliverer = Deliverer(
            FakeTenants(*(tenants or (OAUTH,))),
            self.tokens,
            self.transport,
            self.attachments,
            self.clock,
            {Provider.MICROSOFT: limit, Provider.GOOGLE: limit},
        )

    async def deliver(self, job: SendScanToEmail | SendScanToMe, function=JobFunction.SCAN_TO_EMAIL):
        tenant = await self.deliverer.tenant(job.tenant_id)
        sender = self.deliverer.sender_of(job, function, tenant)
        return await self.deliverer.deliver(job, function, tenant, sender)

    def forced(self) -> list[bool]:
        return [r.force_refresh for r in self.tokens.requests]


def scan(job_id: str = "job-1", **fields) -> SendScanToEmail:
    return SendScanToEmail(
        job_id=job_id,
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=FakeClock()(),
        to=("x@fabrikam.example",),
        **fields,
    )


def granted(token: str) -> AccessTokenReply:
    return AccessTokenReply(outcome=AccessTokenOutcome.GRANTED, access_token=token)


async def test_a_job_is_sent_with_the_senders_access_token() -> None:
    world = World()
    world.server.tokens.add("token-1")
    delivered = await world.deliver(scan())
    assert delivered.sender == ADMIN and delivered.message_id == "<job-1@fleetmail>"
    assert delivered.accepted == ("x@fabrikam.example",) and delivered.smtp_reply.startswith("250")
    [received] = world.server.received
    assert (received.auth_user, received.access_token) == (ADMIN, "token-1")
    assert world.tokens.requests[0].principal == Principal(
        tenant_id="acme", kind=PrincipalKind.ADMINISTRATOR, address=ADMIN
    )


async def test_a_refused_token_is_refreshed_once_with_force_refresh_then_the_job_is_sent() -> None:
    world = World()
    world.server.tokens.add("token-2")  # the server refuses token-1, takes the refreshed one
    delivered = await world.deliver(scan())
    assert world.forced() == [False, True]
    assert [c.access_token for c in world.transport.attempts] == ["token-1", "token-2"]
    assert delivered.message_id == "<job-1@fleetmail>" and len(world.server.received) == 1


async def test_a_refreshed_token_refused_again_is_a_configuration_fault_not_a_sign_in() -> None:
    """The refresh worked, so the grant is alive: a server that refuses the new token too
    refuses what the token is (wrong audience or scope, no admin consent). Signing in again
    would get the same token; the remedy names the scopes and the consent."""
    world = World()  # the server takes no token at all
    with pytest.raises(TokenNotAccepted, match="had just issued") as refused:
        await world.deliver(scan())
    assert world.forced() == [False, True]
    assert len(world.transport.attempts) == 2 and world.server.received == []
    assert refused.value.reason is FailureReason.CONFIGURATION_ERROR
    remedy = refused.value.remedy or ""
    assert "https://outlook.office.com/SMTP.Send" in remedy and "Signing in again does not help" in remedy
    assert "Acquire" not in remedy


@pytest.mark.parametrize(
    ("provider", "app_only", "named"),
    [
        (Provider.MICROSOFT, True, "Grant admin consent"),
        (Provider.MICROSOFT, False, "graph.microsoft.com"),
        (Provider.GOOGLE, False, "https://mail.google.com/"),
        (Provider.GOOGLE, True, "Domain-wide delegation"),
    ],
)
def test_the_remedy_for_a_token_the_server_refuses_names_the_fix(
    provider: Provider, app_only: bool, named: str
) -> None:
    assert named in token_not_accepted_remedy(provider, app_only)


async def test_a_token_is_remembered_for_30_seconds_and_a_token_event_forgets_it() -> None:
    world = World()
    world.server.tokens.update({"token-1", "token-2", "token-3"})
    await world.deliver(scan("job-1"))
    world.clock.advance(29)
    await world.deliver(scan("job-2"))
    assert len(world.tokens.requests) == 1
    world.clock.advance(2)
    await world.deliver(scan("job-3"))
    assert len(world.tokens.requests) == 2
    world.deliverer.forget_token("acme", ADMIN.upper())
    await world.deliver(scan("job-4"))
    assert len(world.tokens.requests) == 3


async def test_a_login_user_without_a_grant_makes_the_job_wait_for_the_sign_in() -> None:
    tenant = OAUTH.model_copy(update={"from_policy": FromPolicy.LOGIN_USER_ADDRESS})
    world = World(tenant)
    world.tokens.queue("walk-up@acme.example", AccessTokenReply(outcome=AccessTokenOutcome.NO_GRANT))
    job = SendScanToMe(
        job_id="job-1",
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=FakeClock()(),
        login_user="walk-up@acme.example",
    )
    with pytest.raises(AwaitingAuthorization) as waiting:
        await world.deliver(job, JobFunction.SCAN_TO_ME)
    assert waiting.value.user == "walk-up@acme.example" and world.transport.attempts == []


async def test_a_login_user_whose_grant_is_dead_waits_for_the_sign_in_too() -> None:
    tenant = OAUTH.model_copy(update={"from_policy": FromPolicy.LOGIN_USER_ADDRESS})
    world = World(tenant)
    world.tokens.queue(
        "walk-up@acme.example", AccessTokenReply(outcome=AccessTokenOutcome.REAUTHORIZATION_REQUIRED)
    )
    job = SendScanToMe(
        job_id="job-1",
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=FakeClock()(),
        login_user="walk-up@acme.example",
    )
    with pytest.raises(AwaitingAuthorization) as waiting:
        await world.deliver(job, JobFunction.SCAN_TO_ME)
    assert waiting.value.user == "walk-up@acme.example" and not waiting.value.administrator


async def test_no_administrator_grant_yet_makes_the_job_wait_for_acquire() -> None:
    world = World()
    world.tokens.queue(ADMIN, AccessTokenReply(outcome=AccessTokenOutcome.NO_GRANT))
    with pytest.raises(AwaitingAuthorization) as waiting:
        await world.deliver(scan())
    assert waiting.value.user == ADMIN and waiting.value.administrator


async def test_a_dead_administrator_grant_needs_reauthorization() -> None:
    world = World()
    world.tokens.queue(ADMIN, AccessTokenReply(outcome=AccessTokenOutcome.REAUTHORIZATION_REQUIRED))
    with pytest.raises(ReauthorizationNeeded):
        await world.deliver(scan())


async def test_a_configuration_error_from_token_service_is_permanent_and_says_fix_a_setting() -> None:
    world = World()
    world.tokens.queue(
        ADMIN,
        AccessTokenReply(
            outcome=AccessTokenOutcome.CONFIGURATION_ERROR,
            detail="no Google app registration is configured",
        ),
    )
    with pytest.raises(ConfigurationError, match="no Google app registration") as failed:
        await world.deliver(scan())
    assert failed.value.reason is FailureReason.CONFIGURATION_ERROR
    assert failed.value.remedy is not None and "setting must be fixed" in failed.value.remedy
    assert "Acquire" not in failed.value.remedy
    assert world.transport.attempts == []


async def test_a_provider_that_cannot_answer_is_transient_with_its_retry_after() -> None:
    world = World()
    world.tokens.queue(
        ADMIN, AccessTokenReply(outcome=AccessTokenOutcome.PROVIDER_UNAVAILABLE, retry_after_s=30.0)
    )
    with pytest.raises(TokenUnavailable) as unavailable:
        await world.deliver(scan())
    assert unavailable.value.retry_after_s == 30.0


async def test_token_service_not_answering_is_transient() -> None:
    world = World()
    world.tokens.down = True
    with pytest.raises(TokenUnavailable, match="did not answer"):
        await world.deliver(scan())


async def test_has_grant_is_false_for_every_answer_that_is_not_a_token() -> None:
    world = World()
    principal = Principal(tenant_id="acme", kind=PrincipalKind.USER, address="u@acme.example")
    assert await world.deliverer.has_grant(principal)
    for outcome in (
        AccessTokenOutcome.NO_GRANT,
        AccessTokenOutcome.REAUTHORIZATION_REQUIRED,
        AccessTokenOutcome.PROVIDER_UNAVAILABLE,
        AccessTokenOutcome.CONFIGURATION_ERROR,
    ):
        world.tokens.queue("u@acme.example", AccessTokenReply(outcome=outcome))
        assert not await world.deliverer.has_grant(principal), outcome
    world.tokens.down = True
    assert not await world.deliverer.has_grant(principal)


def stored(name: str, data: bytes, checksum: bytes | None = None) -> AttachmentRef:
    return AttachmentRef(
        object_name=name,
        filename=f"{name}.pdf",
        content_type="application/pdf",
        size=len(data),
        sha256=hashlib.sha256(checksum or data).hexdigest(),
    )


async def test_the_documents_are_sent_from_the_store_checked_against_their_checksum() -> None:
    world = World()
    world.server.tokens.add("token-1")
    world.attachments.documents["scan-1"] = b"%PDF-1.4 page one"
    await world.deliver(scan(attachments=(stored("scan-1", b"%PDF-1.4 page one"),)))
    assert b"JVBERi0xLjQgcGFnZSBvbmU=" in world.server.received[0].raw  # the PDF, base64


async def test_a_document_that_no_longer_matches_its_checksum_is_an_invalid_job() -> None:
    world = World()
    world.attachments.documents["scan-1"] = b"tampered"
    with pytest.raises(InvalidJob, match="checksum") as invalid:
        await world.deliver(scan(attachments=(stored("scan-1", b"tampered", checksum=b"original"),)))
    assert invalid.value.reason is FailureReason.ATTACHMENT_MISSING and world.transport.attempts == []


async def test_a_missing_document_is_an_invalid_job_and_an_unreadable_store_is_transient() -> None:
    world = World()
    with pytest.raises(InvalidJob, match="no longer stored"):
        await world.deliver(scan(attachments=(stored("gone", b"x"),)))
    world.attachments.down = True
    with pytest.raises(AttachmentsUnavailable):
        await world.deliver(scan(attachments=(stored("gone", b"x"),)))


async def test_a_message_over_the_providers_limit_fails_before_any_token_is_asked_for() -> None:
    world = World(limit=1_000)
    world.attachments.documents["big"] = b"\0" * 2_000
    with pytest.raises(InvalidJob, match="limit for microsoft") as too_large:
        await world.deliver(scan(attachments=(stored("big", b"\0" * 2_000),)))
    assert too_large.value.reason is FailureReason.MESSAGE_TOO_LARGE
    assert world.tokens.requests == [] and world.transport.attempts == []


async def test_an_unknown_tenant_is_an_invalid_job() -> None:
    world = World()
    with pytest.raises(InvalidJob) as invalid:
        await world.deliverer.tenant("nobody")
    assert invalid.value.reason is FailureReason.TENANT_UNKNOWN


BASIC = TenantSettings(tenant_id="acme", administrator_address=ADMIN, smtp=SMTP)


async def test_oauth_off_sends_with_the_stored_username_and_password() -> None:
    world = World(BASIC)
    world.tokens.credentials["acme"] = SmtpCredentialsReply(username="relay@acme.example", password="pw")
    world.server.mailboxes["relay@acme.example"] = "pw"
    await world.deliver(scan())
    assert world.server.received[0].auth_user == "relay@acme.example" and world.tokens.requests == []


async def test_oauth_off_with_a_wrong_password_fails_with_the_remedy_and_no_refresh() -> None:
    world = World(BASIC)
    world.tokens.credentials["acme"] = SmtpCredentialsReply(username="relay@acme.example", password="no")
    world.server.mailboxes["relay@acme.example"] = "pw"
    with pytest.raises(SmtpPermanent) as refused:
        await world.deliver(scan())
    assert refused.value.reason is FailureReason.AUTHENTICATION_FAILED
    assert refused.value.remedy is not None and "stored username and password" in refused.value.remedy
    assert len(world.transport.attempts) == 1 and world.tokens.requests == []


async def test_stored_credentials_are_remembered_for_30_seconds() -> None:
    world = World(BASIC)
    world.server.require_auth = False
    await world.deliver(scan("job-1"))
    world.clock.advance(29)
    await world.deliver(scan("job-2"))
    world.clock.advance(2)
    await world.deliver(scan("job-3"))
    assert world.tokens.credential_requests == ["acme", "acme"]
