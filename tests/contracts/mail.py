"""Contract suites for mail-service's ports: what every implementation must do.

`tests/unit/test_mail_ports_fake.py` runs them on the in-memory fakes, `tests/component/`
on the real adapters (JetStream on a nats-server, SMTP against the SMTP emulator). A
subclass provides the fixtures each suite names.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest
from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_contracts.jobs import JobFunction, SendScanToEmail
from fleetmail_contracts.mail_events import FailureReason, MailAccepted, MailDeferred, MailSent
from fleetmail_contracts.tenants import SmtpSettings
from mail_service.domain.compose import compose
from mail_service.errors import SmtpPermanent, SmtpTransient, TokenRejected
from mail_service.ports import Credentials, DeliveryLedger, EventPublisher, MailEvent, MailTransport, Parking

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

ReadEvents = Callable[[str], Awaitable[list[MailEvent]]]
"""The mail events published for a job id, oldest first."""
ReadDeadLetters = Callable[[str], Awaitable[list[DeadLetter]]]
"""The dead letters with a given `dead_letter_id`."""


def common(job_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "tenant_id": "acme",
        "device_id": "mfp-01",
        "function": JobFunction.SCAN_TO_EMAIL,
        "occurred_at": NOW,
    }


class EventPublisherContract:
    """Fixtures: `publisher` (an EventPublisher), `read_events`, `read_dead_letters`."""

    async def test_a_published_event_is_read_back_whole(
        self, publisher: EventPublisher, read_events: ReadEvents
    ) -> None:
        job_id = f"job-{uuid.uuid4().hex[:8]}"
        sent = MailSent(
            **common(job_id),
            event_id=uuid.uuid4().hex,
            sender="admin@acme.example",
            message_id=f"<{job_id}@fleetmail>",
            smtp_reply="250 2.0.0 OK",
            accepted_recipients=("x@fabrikam.example",),
            rejected_recipients=("gone@fabrikam.example",),
        )
        await publisher.publish(sent)
        assert await read_events(job_id) == [sent]

    async def test_an_event_published_twice_is_kept_once(
        self, publisher: EventPublisher, read_events: ReadEvents
    ) -> None:
        job_id = f"job-{uuid.uuid4().hex[:8]}"
        accepted = MailAccepted(**common(job_id), event_id=uuid.uuid4().hex, sender="admin@acme.example")
        await publisher.publish(accepted)
        await publisher.publish(accepted)
        assert await read_events(job_id) == [accepted]

    async def test_a_jobs_events_keep_the_order_they_were_published_in(
        self, publisher: EventPublisher, read_events: ReadEvents
    ) -> None:
        job_id = f"job-{uuid.uuid4().hex[:8]}"
        events: list[MailEvent] = [
            MailAccepted(**common(job_id), event_id=uuid.uuid4().hex, sender="admin@acme.example"),
            MailDeferred(
                **common(job_id),
                event_id=uuid.uuid4().hex,
                attempt=1,
                next_attempt_at=NOW + timedelta(seconds=5),
                reason="451 4.3.2 try again later",
            ),
            MailSent(
                **common(job_id),
                event_id=uuid.uuid4().hex,
                sender="admin@acme.example",
                message_id=f"<{job_id}@fleetmail>",
                smtp_reply="250 2.0.0 OK",
            ),
        ]
        for event in events:
            await publisher.publish(event)
        assert [e.kind for e in await read_events(job_id)] == ["accepted", "deferred", "sent"]

    async def test_a_dead_letter_keeps_the_original_message_and_why(
        self, publisher: EventPublisher, read_dead_letters: ReadDeadLetters
    ) -> None:
        letter = DeadLetter(
            dead_letter_id=uuid.uuid4().hex,
            original_subject="fleetmail.jobs.v1.scan_to_email",
            original_headers={"content-type": "application/json"},
            payload_b64="eyJqb2JfaWQiOiAiMSJ9",
            reason_code=FailureReason.INVALID_JOB.value,
            detail="unreadable job: 3 errors",
            deliveries=2,
            failed_at=NOW,
            service="mail-service",
        )
        await publisher.dead_letter(letter)
        assert await read_dead_letters(letter.dead_letter_id) == [letter]


class DeliveryLedgerContract:
    """Fixture: `ledger` (a DeliveryLedger, empty of the job ids these tests make up)."""

    async def test_a_job_never_recorded_is_not_delivered(self, ledger: DeliveryLedger) -> None:
        assert not await ledger.already_delivered(f"job-{uuid.uuid4().hex}")

    async def test_a_recorded_job_is_delivered_and_only_that_job(self, ledger: DeliveryLedger) -> None:
        job_id, other = f"job-{uuid.uuid4().hex}", f"job-{uuid.uuid4().hex}"
        await ledger.record(job_id, f"<{job_id}@fleetmail>")
        assert await ledger.already_delivered(job_id)
        assert not await ledger.already_delivered(other)

    async def test_recording_a_job_twice_is_not_an_error(self, ledger: DeliveryLedger) -> None:
        job_id = f"job-{uuid.uuid4().hex}"
        await ledger.record(job_id, f"<{job_id}@fleetmail>")
        await ledger.record(job_id, f"<{job_id}@fleetmail>")
        assert await ledger.already_delivered(job_id)


class MailServer(Protocol):
    """The server a transport contract test sends to, and what the test can arrange there."""

    settings: SmtpSettings

    async def add_mailbox(self, address: str, password: str) -> None: ...

    async def fault(self, stage: str, code: int, text: str) -> None:
        """The next command at `stage` (auth, mail, rcpt, data) gets this reply."""
        ...

    async def reject_recipients(self, *addresses: str) -> None: ...

    async def recipients_of(self, message_id: str) -> list[list[str]]:
        """For each copy of the message the server accepted, its envelope recipients."""
        ...


@dataclass(frozen=True)
class Mailbox:
    address: str
    password: str


def message_for(recipients: tuple[str, ...], sender: str) -> tuple[str, Any, list[str]]:
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    job = SendScanToEmail(
        job_id=job_id, tenant_id="acme", device_id="mfp-01", submitted_at=NOW, to=recipients
    )
    message, envelope = compose(job, JobFunction.SCAN_TO_EMAIL, sender, [], NOW)
    return f"<{job_id}@fleetmail>", message, envelope


class MailTransportContract:
    """Fixtures: `transport` (a MailTransport) and `server` (a MailServer it can reach)."""

    @pytest.fixture
    async def mailbox(self, server: MailServer) -> Mailbox:
        box = Mailbox(f"scanner-{uuid.uuid4().hex[:6]}@acme.example", f"pw-{uuid.uuid4().hex}")
        await server.add_mailbox(box.address, box.password)
        return box

    async def test_a_message_is_delivered_with_a_username_and_password(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        message_id, message, recipients = message_for(("x@fabrikam.example",), mailbox.address)
        credentials = Credentials(mailbox.address, password=mailbox.password)
        result = await transport.send(server.settings, credentials, message, recipients)
        assert result.reply.startswith("250") and result.rejected == {}
        assert await server.recipients_of(message_id) == [["x@fabrikam.example"]]

    async def test_a_refused_access_token_is_token_rejected_with_the_reply(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        message_id, message, recipients = message_for(("x@fabrikam.example",), mailbox.address)
        credentials = Credentials(mailbox.address, access_token="not-a-token-the-server-knows")
        with pytest.raises(TokenRejected) as refused:
            await transport.send(server.settings, credentials, message, recipients)
        assert refused.value.smtp_reply is not None and refused.value.smtp_reply.startswith("535 5.7.3")
        assert await server.recipients_of(message_id) == []

    async def test_a_4xx_reply_is_transient_and_the_next_send_goes_through(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        message_id, message, recipients = message_for(("x@fabrikam.example",), mailbox.address)
        credentials = Credentials(mailbox.address, password=mailbox.password)
        await server.fault("data", 451, "4.3.2 Service temporarily unavailable")
        with pytest.raises(SmtpTransient) as deferred:
            await transport.send(server.settings, credentials, message, recipients)
        assert deferred.value.smtp_reply == "451 4.3.2 Service temporarily unavailable"
        assert await server.recipients_of(message_id) == []
        await transport.send(server.settings, credentials, message, recipients)
        assert await server.recipients_of(message_id) == [["x@fabrikam.example"]]

    async def test_a_known_5xx_reply_is_permanent_with_its_reason_and_remedy(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        _, message, recipients = message_for(("x@fabrikam.example",), mailbox.address)
        credentials = Credentials(mailbox.address, password=mailbox.password)
        await server.fault(
            "mail", 550, "5.7.60 SMTP; Client does not have permissions to send as this sender"
        )
        with pytest.raises(SmtpPermanent) as refused:
            await transport.send(server.settings, credentials, message, recipients)
        assert refused.value.reason is FailureReason.SEND_AS_DENIED
        assert refused.value.remedy is not None and "Send As" in refused.value.remedy

    async def test_a_refused_recipient_is_reported_and_the_others_receive_the_message(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        gone = f"gone-{uuid.uuid4().hex[:6]}@fabrikam.example"
        await server.reject_recipients(gone)
        message_id, message, recipients = message_for(("here@fabrikam.example", gone), mailbox.address)
        credentials = Credentials(mailbox.address, password=mailbox.password)
        result = await transport.send(server.settings, credentials, message, recipients)
        assert list(result.rejected) == [gone] and result.rejected[gone].startswith("550")
        assert await server.recipients_of(message_id) == [["here@fabrikam.example"]]

    async def test_no_recipient_accepted_is_permanent(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        gone = f"gone-{uuid.uuid4().hex[:6]}@fabrikam.example"
        await server.reject_recipients(gone)
        message_id, message, recipients = message_for((gone,), mailbox.address)
        credentials = Credentials(mailbox.address, password=mailbox.password)
        with pytest.raises(SmtpPermanent) as refused:
            await transport.send(server.settings, credentials, message, recipients)
        assert refused.value.smtp_reply is not None and refused.value.smtp_reply.startswith("550 5.1.10")
        assert await server.recipients_of(message_id) == []

    async def test_without_credentials_a_submission_server_refuses_the_sender(
        self, transport: MailTransport, server: MailServer, mailbox: Mailbox
    ) -> None:
        _, message, recipients = message_for(("x@fabrikam.example",), mailbox.address)
        with pytest.raises(SmtpPermanent) as refused:
            await transport.send(server.settings, Credentials(mailbox.address), message, recipients)
        assert refused.value.reason is FailureReason.AUTHENTICATION_FAILED
        assert refused.value.smtp_reply is not None and refused.value.smtp_reply.startswith("530 5.7.57")


PARK_TIMEOUT = timedelta(minutes=15)


class ParkingContract:
    """Fixtures: `parking` (a Parking whose jobs wait PARK_TIMEOUT) and `clock` (its clock)."""

    @staticmethod
    def job(tenant_id: str, user: str) -> SendScanToEmail:
        return SendScanToEmail(
            job_id=f"job-{uuid.uuid4().hex[:12]}",
            tenant_id=tenant_id,
            device_id="mfp-01",
            submitted_at=NOW,
            to=("x@fabrikam.example",),
            login_user=user,
        )

    async def test_a_parked_job_waits_until_the_timeout_from_now(
        self, parking: Parking, clock: Callable[[], datetime]
    ) -> None:
        tenant_id = f"t-{uuid.uuid4().hex[:8]}"
        job = self.job(tenant_id, "walk-up@acme.example")
        deadline = await parking.park(
            job, JobFunction.SCAN_TO_EMAIL, "walk-up@acme.example", job.model_dump_json().encode()
        )
        assert deadline == clock() + PARK_TIMEOUT

    async def test_a_sign_in_resumes_that_users_jobs_once_and_no_one_elses(self, parking: Parking) -> None:
        tenant_id, other_tenant = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
        user, other = "walk-up@acme.example", "someone@acme.example"
        for parked_tenant, parked_user in (
            (tenant_id, user),
            (tenant_id, user),
            (tenant_id, other),
            (other_tenant, user),
        ):
            job = self.job(parked_tenant, parked_user)
            await parking.park(job, JobFunction.SCAN_TO_EMAIL, parked_user, job.model_dump_json().encode())
        assert await parking.resume_user(tenant_id, "Walk-Up@acme.example") == 2
        assert await parking.resume_user(tenant_id, user) == 0
        assert await parking.resume_user(tenant_id, other) == 1
        assert await parking.resume_user(other_tenant, user) == 1

    async def test_the_administrators_sign_in_resumes_the_jobs_that_waited_for_it_and_no_users(
        self, parking: Parking
    ) -> None:
        tenant_id, other_tenant = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
        admin = "admin@acme.example"
        for parked_tenant, administrator in ((tenant_id, True), (tenant_id, False), (other_tenant, True)):
            job = self.job(parked_tenant, admin)
            await parking.park(
                job,
                JobFunction.SCAN_TO_EMAIL,
                admin,
                job.model_dump_json().encode(),
                administrator=administrator,
            )
        # A login user who happens to have the administrator's address is someone else.
        assert await parking.resume_user(tenant_id, admin) == 1
        assert await parking.resume_administrator(tenant_id) == 1
        assert await parking.resume_administrator(tenant_id) == 0
        assert await parking.resume_administrator(other_tenant) == 1
