"""mail-service's Graph and Gmail API transports against the emulators: the SMTP path's MIME
message arrives as built (Bcc recipients reached but not shown, a 25 MB scan intact), the
large-message paths (Graph's draft with upload sessions, Gmail's resumable upload), Sent Items
(and a Gmail account's sent mail, with a token that may read it) found after a crash, and each
refusal classified into mail-service's error tree."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fleetmail_contracts.jobs import JobFunction, SendScanToEmail
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import AccessTokenOutcome, AccessTokenReply, Provider
from fleetmail_contracts.transports import Transport
from fleetmail_devkit.probes import SmtpEmulator, smtp_emulator
from fleetmail_devkit.stack import Stack
from mail_service.adapters.gmail_api import GmailApiDelivery
from mail_service.adapters.graph import GraphDelivery
from mail_service.delivery import Deliverer
from mail_service.domain.compose import compose
from mail_service.domain.mime import AttachmentSource, in_memory
from mail_service.errors import ApiPermanent, ApiTransient, MustWait, TokenRejected
from mail_service.ports import Credentials

from tests.fakes.mail import FakeAttachments, FakeTenants, FakeTokenClient, FakeTransport
from tests.utils.mail_apis import gmail_token, graph_token
from tests.utils.waiting import eventually

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SCAN = 25 * 1024 * 1024


@pytest.fixture(scope="module")
async def gmail(emulators: Stack) -> AsyncIterator[SmtpEmulator]:
    async with smtp_emulator(emulators, "gmail") as running:
        yield running


@pytest.fixture
async def graph(emulators: Stack) -> AsyncIterator[GraphDelivery]:
    delivery = GraphDelivery(emulators.graph_url, emulators.ca_file, 60, lambda: NOW)
    try:
        yield delivery
    finally:
        await delivery.close()


@pytest.fixture
async def gmail_api(emulators: Stack, gmail: SmtpEmulator) -> AsyncIterator[GmailApiDelivery]:
    delivery = GmailApiDelivery(gmail.api_url, emulators.ca_file, 60, lambda: NOW)
    try:
        yield delivery
    finally:
        await delivery.close()


def scan(sender: str, size: int = 0, **recipients: tuple[str, ...]):
    """A Scan to E-mail job's message as the SMTP path composes it, with a document of `size`
    bytes; (message id, message, envelope recipients, the document's sha256)."""
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    job = SendScanToEmail(
        job_id=job_id,
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=NOW,
        to=recipients.get("to", ("to@fabrikam.example",)),
        bcc=recipients.get("bcc", ()),
    )
    document = os.urandom(size)
    attachments = [AttachmentSource("scan.pdf", "application/pdf", in_memory(document), size)] if size else []
    message, envelope = compose(job, JobFunction.SCAN_TO_EMAIL, sender, attachments, NOW)
    return f"<{job_id}@fleetmail>", message, envelope, hashlib.sha256(document).hexdigest()


async def delivered(http: httpx.AsyncClient, control_url: str, message_id: str) -> dict:
    async def listed() -> list[dict]:
        return (await http.get(f"{control_url}/_emulator/messages", params={"message_id": message_id})).json()

    [entry] = await eventually(listed, what=f"{message_id} to be delivered")
    return entry


async def test_graph_sends_the_mime_message_with_bcc_reached_but_not_shown_and_finds_it_in_sent_items(
    emulators: Stack, emulator_http: httpx.AsyncClient, graph: GraphDelivery
) -> None:
    user = f"graph-{uuid.uuid4().hex[:8]}@contoso.example"
    token = await graph_token(emulators, emulator_http, user, "Mail.Send Mail.ReadWrite")
    message_id, message, envelope, _ = scan(user, bcc=("hidden@fabrikam.example",))
    credentials = Credentials(user, token)
    assert not await graph.sent(credentials, message_id)

    result = await graph.send(None, credentials, message, envelope)
    assert result.reply.startswith("202") and result.rejected == {}
    entry = await delivered(emulator_http, emulators.smtp_control_url, message_id)
    assert entry["auth_mechanism"] == "GRAPH"
    assert sorted(entry["rcpt_tos"]) == ["hidden@fabrikam.example", "to@fabrikam.example"]
    raw = (
        await emulator_http.get(f"{emulators.smtp_control_url}/_emulator/messages/{entry['id']}/raw")
    ).content
    assert b"hidden@fabrikam.example" not in raw
    assert await graph.sent(credentials, message_id)


async def test_graph_sends_a_25_mb_scan_as_a_draft_with_an_upload_session_intact(
    emulators: Stack, emulator_http: httpx.AsyncClient, graph: GraphDelivery
) -> None:
    user = f"graph-{uuid.uuid4().hex[:8]}@contoso.example"
    token = await graph_token(emulators, emulator_http, user, "Mail.Send Mail.ReadWrite")
    message_id, message, envelope, sha256 = scan(user, SCAN)
    result = await graph.send(None, Credentials(user, token), message, envelope)
    assert "draft" in result.reply
    [attachment] = (await delivered(emulator_http, emulators.smtp_control_url, message_id))["attachments"]
    assert attachment["sha256"] == sha256 and attachment["size"] == SCAN


async def test_graph_refusals_are_classified(
    emulators: Stack, emulator_http: httpx.AsyncClient, graph: GraphDelivery
) -> None:
    user = f"graph-{uuid.uuid4().hex[:8]}@contoso.example"
    _, message, envelope, _ = scan(user)
    read_only = await graph_token(emulators, emulator_http, user, "Mail.Read")
    with pytest.raises(ApiPermanent) as denied:
        await graph.send(None, Credentials(user, read_only), message, envelope)
    assert denied.value.reason is FailureReason.CONFIGURATION_ERROR
    assert "ErrorAccessDenied" in (denied.value.smtp_reply or "") and "Mail.Send" in (
        denied.value.remedy or ""
    )

    smtp_token = await graph_token(emulators, emulator_http, user, "https://outlook.office.com/SMTP.Send")
    with pytest.raises(TokenRejected, match="401 InvalidAuthenticationToken"):
        await graph.send(None, Credentials(user, smtp_token), message, envelope)

    token = await graph_token(emulators, emulator_http, user, "Mail.Send")
    with pytest.raises(ApiPermanent) as send_as:
        await graph.send(None, Credentials(user, token), scan("someone-else@contoso.example")[1], envelope)
    assert send_as.value.reason is FailureReason.SEND_AS_DENIED

    control = f"{emulators.smtp_control_url}/_emulator/faults"
    await emulator_http.post(control, json={"stage": "api", "code": 429, "text": "throttled", "user": user})
    with pytest.raises(MustWait) as throttled:
        await graph.send(None, Credentials(user, token), message, envelope)
    assert (throttled.value.until - NOW).total_seconds() == 1
    await emulator_http.post(control, json={"stage": "api", "code": 503, "text": "down", "user": user})
    with pytest.raises(ApiTransient):
        await graph.send(None, Credentials(user, token), message, envelope)


async def test_gmail_api_sends_small_and_resumable_messages_intact(
    emulators: Stack, emulator_http: httpx.AsyncClient, gmail: SmtpEmulator, gmail_api: GmailApiDelivery
) -> None:
    user = f"api-{uuid.uuid4().hex[:8]}@gmail-tenant.example"
    token = await gmail_token(emulators, emulator_http, user)
    small_id, small, envelope, _ = scan(user, bcc=("hidden@fabrikam.example",))
    result = await gmail_api.send(None, Credentials(user, token), small, envelope)
    assert result.reply.startswith("200 OK Gmail message id ")
    entry = await delivered(emulator_http, gmail.control_url, small_id)
    assert entry["auth_mechanism"] == "GMAIL_API" and "hidden@fabrikam.example" in entry["rcpt_tos"]

    large_id, large, envelope, sha256 = scan(user, SCAN)
    await gmail_api.send(None, Credentials(user, token), large, envelope)
    [attachment] = (await delivered(emulator_http, gmail.control_url, large_id))["attachments"]
    assert attachment["sha256"] == sha256 and attachment["size"] == SCAN


async def test_gmail_api_refusals_are_classified(
    emulators: Stack, emulator_http: httpx.AsyncClient, gmail: SmtpEmulator, gmail_api: GmailApiDelivery
) -> None:
    user = f"api-{uuid.uuid4().hex[:8]}@gmail-tenant.example"
    _, message, envelope, _ = scan(user)
    read_only = await gmail_token(
        emulators, emulator_http, user, "https://www.googleapis.com/auth/gmail.readonly"
    )
    with pytest.raises(ApiPermanent) as denied:
        await gmail_api.send(None, Credentials(user, read_only), message, envelope)
    assert denied.value.reason is FailureReason.CONFIGURATION_ERROR and "gmail.send" in (
        denied.value.remedy or ""
    )

    token = await gmail_token(emulators, emulator_http, user)
    control = f"{gmail.control_url}/_emulator/faults"
    await emulator_http.post(control, json={"stage": "api", "code": 429, "text": "slow down", "user": user})
    with pytest.raises(MustWait):
        await gmail_api.send(None, Credentials(user, token), message, envelope)
    with pytest.raises(TokenRejected):
        await gmail_api.send(None, Credentials(user, "not-a-token"), message, envelope)


async def test_a_mailbox_not_enabled_for_rest_is_a_setting_to_fix(
    emulators: Stack, emulator_http: httpx.AsyncClient, graph: GraphDelivery
) -> None:
    user = f"graph-{uuid.uuid4().hex[:8]}@contoso.example"
    mailbox = await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/mailboxes", json={"address": user, "rest_enabled": False}
    )
    assert mailbox.status_code == 200, mailbox.text
    token = await graph_token(emulators, emulator_http, user, "Mail.Send")
    _, message, envelope, _ = scan(user)
    with pytest.raises(ApiPermanent) as refused:
        await graph.send(None, Credentials(user, token), message, envelope)
    assert refused.value.reason is FailureReason.CONFIGURATION_ERROR
    assert "MailboxNotEnabledForRESTAPI" in (refused.value.smtp_reply or "") and "smtp" in (
        refused.value.remedy or ""
    )


async def test_gmail_api_an_unreadable_answer_after_acceptance_is_a_delivery_not_a_second_send(
    emulators: Stack, emulator_http: httpx.AsyncClient, gmail: SmtpEmulator, gmail_api: GmailApiDelivery
) -> None:
    user = f"api-{uuid.uuid4().hex[:8]}@gmail-tenant.example"
    token = await gmail_token(emulators, emulator_http, user)
    message_id, message, envelope, _ = scan(user)
    fault = {"stage": "answer", "code": 200, "text": "<html>upstream proxy</html>", "user": user}
    await emulator_http.post(f"{gmail.control_url}/_emulator/faults", json=fault)
    result = await gmail_api.send(None, Credentials(user, token), message, envelope)
    assert "message id unknown" in result.reply
    await delivered(emulator_http, gmail.control_url, message_id)  # exactly one delivery


async def test_graph_a_draft_that_is_not_sent_is_deleted_and_an_unreadable_one_is_a_retry(
    emulators: Stack, emulator_http: httpx.AsyncClient, graph: GraphDelivery
) -> None:
    user = f"graph-{uuid.uuid4().hex[:8]}@contoso.example"
    token = await graph_token(emulators, emulator_http, user, "Mail.Send Mail.ReadWrite")
    _, message, envelope, _ = scan(user, 3 * 1024 * 1024 + 1)
    control = emulators.smtp_control_url

    async def drafts() -> list[dict]:
        listed = await emulator_http.get(f"{control}/_emulator/api/drafts", params={"mailbox": user})
        assert listed.status_code == 200, listed.text
        return listed.json()

    fault = {"stage": "draft_send", "code": 503, "text": "down", "user": user}
    await emulator_http.post(f"{control}/_emulator/faults", json=fault)
    with pytest.raises(ApiTransient) as failed:
        await graph.send(None, Credentials(user, token), message, envelope)
    assert failed.value.retry_after_s is None  # no Retry-After: the retry policy's backoff
    assert await drafts() == []

    fault = {"stage": "answer", "code": 201, "text": "<html>gateway</html>", "user": user}
    await emulator_http.post(f"{control}/_emulator/faults", json=fault)
    with pytest.raises(ApiTransient, match="without a readable id"):
        await graph.send(None, Credentials(user, token), message, envelope)


def largest_inline_attachment() -> int:
    """The largest scan.pdf whose one request (the file base64-encoded in JSON) is within
    Graph's 4 MiB: every larger one goes through an upload session."""
    skeleton = json.dumps(
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "scan.pdf",
            "contentType": "application/pdf",
            "contentBytes": "",
        },
        separators=(",", ":"),
    )
    return (4 * 1024 * 1024 - len(skeleton)) // 4 * 3


@pytest.mark.parametrize("offset", [0, 1])
async def test_graph_attachments_either_side_of_the_one_request_limit_arrive_intact(
    emulators: Stack, emulator_http: httpx.AsyncClient, graph: GraphDelivery, offset: int
) -> None:
    size = largest_inline_attachment() + offset
    assert size < 3 * 1024 * 1024  # in the gap Graph's 3 MB rule of thumb leaves
    user = f"graph-{uuid.uuid4().hex[:8]}@contoso.example"
    token = await graph_token(emulators, emulator_http, user, "Mail.Send Mail.ReadWrite")
    message_id, message, envelope, sha256 = scan(user, size)
    result = await graph.send(None, Credentials(user, token), message, envelope)
    assert "draft" in result.reply
    [attachment] = (await delivered(emulator_http, emulators.smtp_control_url, message_id))["attachments"]
    assert attachment["sha256"] == sha256 and attachment["size"] == size


async def messages_with_id(http: httpx.AsyncClient, control_url: str, message_id: str) -> list[dict]:
    """What the emulator delivered with this Message-ID (recorded before the API answers)."""
    return (await http.get(f"{control_url}/_emulator/messages", params={"message_id": message_id})).json()


@pytest.mark.parametrize(
    ("scope", "deliveries"),
    [
        ("https://mail.google.com/", 1),
        ("https://www.googleapis.com/auth/gmail.send", 2),
        # Gmail takes no search from gmail.metadata: a refusal that is no failure of the job.
        ("https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.metadata", 2),
    ],
)
async def test_gmail_api_a_redelivered_job_is_found_and_not_sent_twice_when_the_token_may_search(
    emulators: Stack,
    emulator_http: httpx.AsyncClient,
    gmail: SmtpEmulator,
    gmail_api: GmailApiDelivery,
    scope: str,
    deliveries: int,
) -> None:
    """The job is sent, then delivered again as after a crash before the ledger's record: a
    token that may search finds it (one message at Gmail); gmail.send alone cannot, and the job
    is sent a second time, as the README says."""
    user = f"api-{uuid.uuid4().hex[:8]}@gmail-tenant.example"
    token = await gmail_token(emulators, emulator_http, user, scope)
    tenant = TenantSettings(
        tenant_id="acme",
        oauth_enabled=True,
        provider=Provider.GOOGLE,
        administrator_address=user,
        transport=Transport.GMAIL_API,
    )
    tokens = FakeTokenClient()  # token-service is not under test: it hands out the emulator's token
    granted = AccessTokenReply(outcome=AccessTokenOutcome.GRANTED, access_token=token)
    tokens.queue(user, granted, granted)
    deliverer = Deliverer(
        FakeTenants(tenant),
        tokens,
        FakeTransport(),
        FakeAttachments(),
        lambda: NOW,
        {},
        apis={Transport.GMAIL_API: gmail_api},
        sent_items={Transport.GMAIL_API: gmail_api},
    )
    job = SendScanToEmail(
        job_id=f"job-{uuid.uuid4().hex[:12]}",
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=NOW,
        to=("to@fabrikam.example",),
    )
    sender = deliverer.sender_of(job, JobFunction.SCAN_TO_EMAIL, tenant)
    first = await deliverer.deliver(job, JobFunction.SCAN_TO_EMAIL, tenant, sender)
    assert first.smtp_reply.startswith("200 OK Gmail message id ")
    deliverer.forget_token("acme", user)  # the restarted replica asks token-service again

    again = await deliverer.deliver(job, JobFunction.SCAN_TO_EMAIL, tenant, sender, redelivered=True)
    found = again.smtp_reply.startswith("found in the account's sent mail")
    assert found is (deliveries == 1) and again.accepted == ("to@fabrikam.example",)
    assert (
        len(await messages_with_id(emulator_http, gmail.control_url, f"<{job.job_id}@fleetmail>"))
        == deliveries
    )
