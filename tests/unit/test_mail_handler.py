"""The handler edge with fake ports: each decision carried out — the events published in
order, the ledger written before the ack, dead letters, NAKs with their delay, parking."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fleetmail_contracts.jobs import JobFunction, SendScanToEmail, SendScanToMe
from fleetmail_contracts.mail_events import FailureReason, MailDeferred, MailFailed, MailParked, MailSent
from fleetmail_contracts.tenants import FromPolicy, SmtpSettings, TenantSettings
from fleetmail_contracts.tokens import AccessTokenOutcome, AccessTokenReply
from fleetmail_runtime.bus import BusUnavailable
from mail_service import requeue
from mail_service.delivery import Deliverer
from mail_service.domain.decisions import RetryPolicy
from mail_service.handler import Failures, JobHandler, TokenEvents
from mail_service.requeue import FAILURES, NOT_BEFORE

from tests.fakes.mail import (
    FakeAttachments,
    FakeClock,
    FakeEventPublisher,
    FakeJobMessage,
    FakeLedger,
    FakeMailServer,
    FakeParking,
    FakeTenants,
    FakeTokenClient,
    FakeTransport,
    payload_of,
)

ADMIN = "admin@acme.example"
TENANT = TenantSettings(
    tenant_id="acme",
    oauth_enabled=True,
    administrator_address=ADMIN,
    from_policy=FromPolicy.ADMINISTRATOR_ADDRESS,
    smtp=SmtpSettings(host="smtp.acme.test", port=587),
)
USERS = TENANT.model_copy(update={"tenant_id": "users", "from_policy": FromPolicy.LOGIN_USER_ADDRESS})


class Edge:
    """A job handler on fakes; `jitter` 0.5 makes every backoff three quarters of its step."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.tokens = FakeTokenClient()
        self.server = FakeMailServer(tokens={"token-1"})
        self.ledger = FakeLedger()
        self.events = FakeEventPublisher()
        self.parking = FakeParking(self.clock)
        tenants = FakeTenants(TENANT, USERS)
        self.deliverer = Deliverer(
            tenants, self.tokens, FakeTransport(self.server), FakeAttachments(), self.clock, {}
        )
        self.failures = Failures(
            "mail-service", self.events, tenants, self.clock, park_timeout_s=900, administrator_wait_s=86400
        )
        self.handler = JobHandler(
            self.deliverer,
            self.ledger,
            self.events,
            self.parking,
            self.failures,
            RetryPolicy(max_deliver=4, base_s=5, max_s=300),
            self.clock,
            lambda: 0.5,
        )

    async def handle(self, job: SendScanToEmail | SendScanToMe, attempt: int = 1) -> FakeJobMessage:
        """Attempt number `attempt` of the job: a message put back after `attempt - 1` failures."""
        carried = {FAILURES: str(attempt - 1)} if attempt > 1 else {}
        message = FakeJobMessage(job.model_dump_json().encode(), headers=carried)
        await self.handler.handle(message)
        return message


def scan(job_id: str = "job-1", **fields) -> SendScanToEmail:
    return SendScanToEmail(
        job_id=job_id,
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=FakeClock()(),
        to=("x@fabrikam.example",),
        **fields,
    )


async def test_a_delivered_job_is_recorded_announced_and_acknowledged() -> None:
    edge = Edge()
    message = FakeJobMessage(scan().model_dump_json().encode())
    answered_when_recorded: list[list[str]] = []
    record = edge.ledger.record

    async def recording(job_id: str, message_id: str) -> None:
        answered_when_recorded.append(list(message.answers))
        await record(job_id, message_id)

    edge.ledger.record = recording
    await edge.handler.handle(message)
    assert answered_when_recorded == [[]], "the ledger is written before the ack"
    assert message.answers == ["ack"]
    assert edge.ledger.records == {"job-1": "<job-1@fleetmail>"}
    assert edge.events.kinds("job-1") == ["accepted", "sent"]
    sent = edge.events.events[-1]
    assert (
        isinstance(sent, MailSent)
        and sent.sender == ADMIN
        and sent.accepted_recipients == ("x@fabrikam.example",)
    )
    assert edge.events.dead_letters == []


async def test_a_redelivered_job_already_in_the_ledger_is_acknowledged_and_not_sent_again() -> None:
    edge = Edge()
    edge.ledger.records["job-1"] = "<job-1@fleetmail>"
    message = await edge.handle(scan(), attempt=2)
    assert message.answers == ["ack"] and edge.server.received == [] and edge.events.events == []


async def test_a_first_delivery_is_not_looked_up_in_the_ledger() -> None:
    # JetStream drops duplicate publishes: only a redelivery can find its job already sent.
    edge = Edge()
    edge.ledger.records["job-1"] = "<job-1@fleetmail>"
    await edge.handle(scan(), attempt=1)
    assert len(edge.server.received) == 1


async def test_a_transient_failure_is_announced_as_deferred_and_put_back_with_its_count_and_backoff() -> None:
    edge = Edge()
    edge.server.faults.append(("data", 451, "4.3.2 Service temporarily unavailable"))
    message = await edge.handle(scan(), attempt=2)
    assert message.answers == ["ack"]
    # The failure travels with the job (not in JetStream's count of deliveries), and so does
    # its backoff: 10 s step, jitter 0.5.
    assert edge.parking.put_back_headers == [
        {FAILURES: "2", NOT_BEFORE: (edge.clock() + timedelta(seconds=7.5)).isoformat()}
    ]
    [copy_id] = edge.parking.put_back_as
    assert copy_id.startswith("job-1.after.") and copy_id == requeue.copy_id("job-1", message.headers)
    [deferred] = edge.events.events
    assert isinstance(deferred, MailDeferred) and deferred.attempt == 2
    assert deferred.next_attempt_at == edge.clock() + timedelta(seconds=7.5)
    assert "451 4.3.2" in deferred.reason and edge.ledger.records == {}


async def test_the_first_attempt_announces_accepted_before_deferred() -> None:
    edge = Edge()
    edge.server.faults.append(("data", 451, "4.3.2 try later"))
    await edge.handle(scan(), attempt=1)
    assert edge.events.kinds("job-1") == ["accepted", "deferred"]


async def test_a_transient_failure_at_max_deliver_is_dead_lettered_and_announced_failed() -> None:
    edge = Edge()
    edge.server.faults.append(("data", 451, "4.3.2 try later"))
    job = scan()
    message = await edge.handle(job, attempt=4)
    assert message.answers == ["ack"]
    [letter] = edge.events.dead_letters
    assert letter.reason_code == "retries_exhausted" and letter.deliveries == 4
    assert payload_of(letter) == job.model_dump_json().encode()
    assert letter.original_headers == {"content-type": "application/json"}  # no Nats-* headers
    [failed] = edge.events.events
    assert isinstance(failed, MailFailed) and failed.reason_code is FailureReason.RETRIES_EXHAUSTED
    assert failed.detail.startswith("gave up after 4 attempts") and failed.smtp_reply == "451 4.3.2 try later"


async def test_a_permanent_failure_is_dead_lettered_and_announced_with_its_remedy() -> None:
    edge = Edge()
    edge.tokens.queue(
        ADMIN,
        AccessTokenReply(outcome=AccessTokenOutcome.CONFIGURATION_ERROR, detail="no app registration"),
    )
    message = await edge.handle(scan())
    assert message.answers == ["ack"]
    [letter] = edge.events.dead_letters
    assert letter.reason_code == "configuration_error" and letter.detail == "no app registration"
    failed = edge.events.events[-1]
    assert isinstance(failed, MailFailed) and failed.reason_code is FailureReason.CONFIGURATION_ERROR
    assert failed.remedy is not None and "setting must be fixed" in failed.remedy
    assert edge.events.kinds("job-1") == ["accepted", "failed"]


async def test_a_job_for_a_user_without_a_grant_is_parked_and_announced() -> None:
    edge = Edge()
    edge.tokens.queue("walk-up@acme.example", AccessTokenReply(outcome=AccessTokenOutcome.NO_GRANT))
    job = SendScanToMe(
        job_id="job-1",
        tenant_id="users",
        device_id="mfp-01",
        submitted_at=FakeClock()(),
        login_user="walk-up@acme.example",
    )
    message = await edge.handle(job)
    assert message.answers == ["ack"]
    [parked] = edge.parking.parked
    assert parked.user == "walk-up@acme.example" and parked.function is JobFunction.SCAN_TO_ME
    assert parked.job_json == job.model_dump_json().encode()
    event = edge.events.events[-1]
    assert isinstance(event, MailParked) and event.resume_deadline == parked.deadline
    assert edge.events.kinds("job-1") == ["accepted", "parked"] and edge.events.dead_letters == []


async def test_an_unreadable_job_is_dead_lettered_without_an_event() -> None:
    edge = Edge()
    message = FakeJobMessage(json.dumps({"function": "scan_to_email", "job_id": ""}).encode())
    await edge.handler.handle(message)
    assert message.answers == ["ack"] and edge.events.events == []
    [letter] = edge.events.dead_letters
    assert letter.reason_code == "invalid_job" and letter.detail.startswith("unreadable job:")


async def test_a_job_of_an_unknown_tenant_is_dead_lettered_as_tenant_unknown() -> None:
    edge = Edge()
    message = await edge.handle(scan().model_copy(update={"tenant_id": "nobody"}))
    assert message.answers == ["ack"]
    assert [d.reason_code for d in edge.events.dead_letters] == ["tenant_unknown"]
    assert edge.events.kinds("job-1") == ["failed"]  # no sender was known: no 'accepted'


async def test_an_event_the_bus_does_not_take_leaves_the_job_unanswered_for_redelivery() -> None:
    edge = Edge()
    edge.server.faults.append(("data", 451, "4.3.2 try later"))
    edge.events.down = True
    message = FakeJobMessage(scan().model_dump_json().encode(), attempt=2)
    with pytest.raises(BusUnavailable):
        await edge.handler.handle(message)
    assert message.answers == []


async def test_a_parked_job_past_its_deadline_is_dead_lettered_with_the_sign_in_remedy() -> None:
    edge = Edge()
    job = scan(login_user="walk-up@acme.example")
    await edge.failures.parking_expired(job, JobFunction.SCAN_TO_EMAIL, "walk-up@acme.example", False)
    [letter] = edge.events.dead_letters
    assert letter.reason_code == "authorization_timeout" and letter.deliveries == 1
    assert letter.original_subject == "fleetmail.jobs.v1.scan_to_email"
    [failed] = edge.events.events
    assert isinstance(failed, MailFailed) and failed.reason_code is FailureReason.AUTHORIZATION_TIMEOUT
    assert failed.detail.startswith("walk-up@acme.example did not sign in within 15 minutes")
    assert failed.remedy == "Sign in at the device's OAuth screen, then send the job again."


async def test_a_token_event_forgets_the_token_and_a_users_new_grant_resumes_their_jobs() -> None:
    edge = Edge()
    edge.server.tokens.add("token-2")
    await edge.handle(scan("job-1"))
    events = TokenEvents(edge.deliverer, edge.parking)
    await edge.parking.park(scan("job-2"), JobFunction.SCAN_TO_EMAIL, "u@acme.example", b"{}")
    await events.on_event({"kind": "refreshed", "principal": {"tenant_id": "acme", "address": ADMIN}})
    await events.on_event(
        {"kind": "acquired", "principal": {"tenant_id": "acme", "address": "U@acme.example", "kind": "user"}}
    )
    await edge.handle(scan("job-3"))
    assert len(edge.tokens.requests) == 2  # the remembered token was forgotten
    assert [p.job.job_id for p in edge.parking.resumed] == ["job-2"] and edge.parking.parked == []


async def test_a_job_without_an_administrator_grant_is_parked_for_acquire_and_resumed_by_it() -> None:
    edge = Edge()
    edge.tokens.queue(ADMIN, AccessTokenReply(outcome=AccessTokenOutcome.NO_GRANT))
    message = await edge.handle(scan("job-1"))
    assert message.answers == ["ack"] and edge.events.dead_letters == []
    [parked] = edge.parking.parked
    assert parked.administrator and parked.user == ADMIN
    event = edge.events.events[-1]
    assert isinstance(event, MailParked) and event.administrator and event.user == ADMIN
    events = TokenEvents(edge.deliverer, edge.parking)
    # A login user's sign-in does not release it; the administrator's does.
    await events.on_event(
        {"kind": "acquired", "principal": {"tenant_id": "acme", "address": ADMIN, "kind": "user"}}
    )
    assert edge.parking.resumed == []
    await events.on_event(
        {"kind": "acquired", "principal": {"tenant_id": "acme", "address": ADMIN, "kind": "administrator"}}
    )
    assert [p.job.job_id for p in edge.parking.resumed] == ["job-1"]


async def test_a_job_that_waited_too_long_for_the_administrator_says_acquire() -> None:
    edge = Edge()
    await edge.failures.parking_expired(scan(), JobFunction.SCAN_TO_EMAIL, ADMIN, True)
    [failed] = edge.events.events
    assert isinstance(failed, MailFailed) and failed.reason_code is FailureReason.AUTHORIZATION_TIMEOUT
    assert failed.detail.startswith(
        f"OAuth 2.0 is on and the administrator ({ADMIN}) did not sign in within 24 hours"
    )
    assert failed.remedy is not None and "Acquire" in failed.remedy
