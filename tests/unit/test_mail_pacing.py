"""A mailbox's limits across replicas, on an injected clock: turns at its rate, places in
submission, its quota window — and the job edge that waits instead of failing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from fleetmail_contracts.mail_events import MailDeferred, MailPaced, MailWaitingForQuota
from fleetmail_contracts.tenants import SendingLimits
from fleetmail_runtime import smtp_replies
from fleetmail_runtime.bus import BusUnavailable
from mail_service.delivery import Deliverer, part_key
from mail_service.domain.decisions import RetryPolicy, WaitForMailbox, decide
from mail_service.domain.limits import (
    MailboxLimits,
    MailboxState,
    Turn,
    Wait,
    WaitKind,
    block,
    mailbox_key,
    release,
    reserve,
    take,
)
from mail_service.errors import MustWait, QuotaExceeded
from mail_service.handler import Failures, JobHandler
from mail_service.pacing import MailboxGate, PacingPolicy
from mail_service.requeue import FAILURES, NOT_BEFORE

from tests.fakes.mail import (
    FakeAttachments,
    FakeClock,
    FakeEventPublisher,
    FakeJobMessage,
    FakeLedger,
    FakeLimitsStore,
    FakeMailServer,
    FakeParking,
    FakeTenants,
    FakeTokenClient,
    FakeTransport,
)
from tests.unit.test_mail_handler import TENANT, scan
from tests.utils import eventually

EXCHANGE = MailboxLimits(concurrent=3, interval_s=2.0)
POLICY = PacingPolicy(horizon_s=20, lease_s=180, place_poll_s=0.5)


def test_turns_come_at_the_rate_and_a_far_one_is_not_reserved() -> None:
    state = MailboxState()
    turns = [reserve(state, 1000.0, EXCHANGE, horizon_s=20) for _ in range(11)]
    assert turns == [Turn(1000.0 + 2 * i) for i in range(11)]
    far = reserve(state, 1000.0, EXCHANGE, horizon_s=20)
    assert far == Wait(1022.0, WaitKind.PACED)
    assert state.next_turn == 1022.0  # a turn not taken is not used up


def test_places_in_submission_are_bounded_and_a_dead_holders_lease_runs_out() -> None:
    state = MailboxState()
    assert all(take(state, h, 0.0, EXCHANGE, lease_s=60) for h in ("a", "b", "c"))
    assert not take(state, "d", 1.0, EXCHANGE, lease_s=60)
    release(state, "a")
    assert take(state, "d", 1.0, EXCHANGE, lease_s=60)
    assert not take(state, "e", 59.0, EXCHANGE, lease_s=60)
    assert take(state, "e", 60.0, EXCHANGE, lease_s=60)  # b and c's replica died: freed


def test_a_blocked_mailbox_waits_for_its_quota_window() -> None:
    state = MailboxState()
    block(state, 5000.0)
    assert reserve(state, 1000.0, EXCHANGE, 20) == Wait(5000.0, WaitKind.WAITING_FOR_QUOTA)
    assert isinstance(reserve(state, 5000.0, EXCHANGE, 20), Turn)
    assert MailboxState.from_json(state.to_json()) == state


class Timeline:
    """A fake clock whose sleep moves it: waiting costs no real time."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.started: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)


async def test_the_gate_paces_submissions_and_says_when_a_waiting_one_goes() -> None:
    timeline = Timeline()
    gate = MailboxGate(FakeLimitsStore(), POLICY, timeline.clock, timeline.sleep)
    told = []

    async def paced(at) -> None:
        told.append(at)

    start = timeline.clock()
    for _ in range(4):
        async with gate.submission("acme.box", EXCHANGE, paced):
            timeline.started.append((timeline.clock() - start).total_seconds())
    assert timeline.started == [0.0, 2.0, 4.0, 6.0]
    # Each submission came right after the previous one: every later one waited its turn.
    assert told == [start + timedelta(seconds=s) for s in (2.0, 4.0, 6.0)]


async def test_a_quota_reply_holds_the_mailbox_until_its_window() -> None:
    timeline = Timeline()
    store = FakeLimitsStore()
    gate = MailboxGate(store, POLICY, timeline.clock, timeline.sleep)
    with pytest.raises(MustWait) as waited:
        async with gate.submission("acme.box", EXCHANGE, None):
            raise QuotaExceeded("554 5.2.0 …", smtp_replies.QUOTA_REMEDY)
    assert waited.value.kind is WaitKind.WAITING_FOR_QUOTA
    assert waited.value.until == timeline.clock() + timedelta(seconds=3600)
    await asyncio.sleep(0)  # the place is given back in the background
    assert store.states["acme.box"].holders == {}
    with pytest.raises(MustWait):
        async with gate.submission("acme.box", EXCHANGE, None):
            pytest.fail("nothing goes while the quota is used up")


async def test_submissions_beyond_the_mailboxs_places_wait_for_one_to_free() -> None:
    gate = MailboxGate(FakeLimitsStore(), POLICY, FakeClock(), asyncio.sleep)
    unpaced = MailboxLimits(concurrent=3, interval_s=0.0)
    inside, most = 0, 0
    release_all = asyncio.Event()

    async def one() -> None:
        nonlocal inside, most
        async with gate.submission("acme.box", unpaced, None):
            inside += 1
            most = max(most, inside)
            await release_all.wait()
            inside -= 1

    tasks = [asyncio.create_task(one()) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert inside == 3
    release_all.set()
    await asyncio.gather(*tasks)
    assert most == 3


async def test_a_place_held_elsewhere_for_long_is_waited_for_in_the_queue() -> None:
    """Every place taken by another replica (or a dead one, until its lease ends): after the
    horizon the job goes back to the queue instead of holding its batch — and every other
    tenant's job fetched with it."""
    timeline = Timeline()
    store = FakeLimitsStore()
    for holder in ("a", "b", "c"):
        assert await store.change(
            "acme.box", lambda s, h=holder: take(s, h, timeline.clock().timestamp(), EXCHANGE, 180)
        )
    gate = MailboxGate(
        store,
        PacingPolicy(horizon_s=2, lease_s=180, place_poll_s=0.5),
        timeline.clock,
        timeline.sleep,
    )

    async def freed_never(key: str) -> None:  # another replica's places: looked at again each poll
        timeline.clock.advance(0.5)

    gate._place_freed = freed_never  # type: ignore[method-assign]
    start = timeline.clock()
    with pytest.raises(MustWait) as waited:
        async with gate.submission("acme.box", EXCHANGE, None):
            pytest.fail("no place was free")
    assert waited.value.kind is WaitKind.PACED
    assert timeline.clock() - start <= timedelta(seconds=2.5)


async def test_a_submission_longer_than_its_lease_keeps_its_place_and_frees_it_after() -> None:
    """A live submission renews its lease: no other submission gets its place while it goes
    on, however long that takes; the place is free once it is done."""
    store = FakeLimitsStore()
    gate = MailboxGate(
        store, PacingPolicy(horizon_s=2, lease_s=0.3, place_poll_s=0.05), lambda: datetime.now(UTC)
    )
    one = MailboxLimits(concurrent=1, interval_s=0.0)

    async def other_takes() -> bool:
        return await store.change(
            "acme.box", lambda s: take(s, "other", datetime.now(UTC).timestamp(), one, 0.3)
        )

    async with gate.submission("acme.box", one, None):
        await asyncio.sleep(1.0)  # over three leases
        assert not await other_takes()
    await eventually(other_takes, within=5, what="the place freed after the submission")


def test_waiting_for_the_mailbox_is_no_failure() -> None:
    policy = RetryPolicy(max_deliver=4, base_s=5, max_s=300)
    until = FakeClock()() + timedelta(hours=1)
    decision = decide(
        MustWait(until, WaitKind.WAITING_FOR_QUOTA), attempt=9, policy=policy, jitter=lambda: 0.5
    )
    assert decision == WaitForMailbox(until, WaitKind.WAITING_FOR_QUOTA)


class QuotaEdge:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.server = FakeMailServer(tokens={"token-1"})
        self.events = FakeEventPublisher()
        self.parking = FakeParking(self.clock)
        tenants = FakeTenants(TENANT)

        async def sleep(seconds: float) -> None:
            self.clock.advance(seconds)

        self.store = FakeLimitsStore()
        self.ledger = FakeLedger()
        gate = MailboxGate(self.store, POLICY, self.clock, sleep)
        deliverer = Deliverer(
            tenants,
            FakeTokenClient(),
            FakeTransport(self.server),
            FakeAttachments(),
            self.clock,
            {},
            gate,
            {TENANT.provider: EXCHANGE},
        )
        self.handler = JobHandler(
            deliverer,
            self.ledger,
            self.events,
            self.parking,
            Failures(
                "mail-service",
                self.events,
                tenants,
                self.clock,
                park_timeout_s=900,
                administrator_wait_s=86400,
            ),
            RetryPolicy(max_deliver=4, base_s=5, max_s=300),
            self.clock,
            lambda: 0.5,
        )


async def test_a_quota_reply_defers_the_job_and_never_dead_letters_it() -> None:
    edge = QuotaEdge()
    quota = smtp_replies.SUBMISSION_QUOTA_EXCEEDED
    edge.server.faults.append(("mail", quota.code, quota.text))
    first = FakeJobMessage(scan("job-q1").model_dump_json().encode(), attempt=1)
    await edge.handler.handle(first)
    assert first.answers == ["nack"] and first.nack_delay_s == 3600
    [waiting] = [e for e in edge.events.events if isinstance(e, MailWaitingForQuota)]
    assert waiting.remedy == smtp_replies.QUOTA_REMEDY and "5.2.0" in (waiting.smtp_reply or "")
    assert edge.events.dead_letters == []
    # Near JetStream's bound on deliveries, the job goes back as a new message instead.
    late = FakeJobMessage(scan("job-q2").model_dump_json().encode(), attempt=3)
    await edge.handler.handle(late)
    assert late.answers == ["ack"] and len(edge.parking.put_back_as) == 1
    assert not [e for e in edge.events.events if isinstance(e, MailPaced)]


async def test_recipients_over_the_cap_go_in_parts_each_sent_once() -> None:
    edge = QuotaEdge()
    small = TENANT.model_copy(update={"sending_limits": SendingLimits(recipients_per_message=2)})
    edge.handler.deliverer.tenants = FakeTenants(small)
    ledger = FakeLedger()
    edge.handler.deliverer.ledger = ledger
    to = tuple(f"r{i}@fabrikam.example" for i in range(5))
    job = scan("job-split").model_copy(update={"to": to})
    delivered = await edge.handler.deliverer.deliver(
        job, job.function, small, edge.handler.deliverer.sender_of(job, job.function, small)
    )
    assert [r.recipients for r in edge.server.received] == [to[0:2], to[2:4], to[4:5]]
    assert delivered.accepted == to and "3 messages" in delivered.smtp_reply
    again = await edge.handler.deliverer.deliver(
        job, job.function, small, edge.handler.deliverer.sender_of(job, job.function, small)
    )
    assert len(edge.server.received) == 3 and again.accepted == to  # a redelivery sends nothing twice


async def test_a_cap_changed_while_a_split_job_waited_leaves_no_recipient_out() -> None:
    """Part 1 (two recipients) went out; the cap was raised to five before the rest did: the
    new single part is not taken for the old first one, so r2..r4 are not left out."""
    edge = QuotaEdge()
    ledger = FakeLedger()
    edge.handler.deliverer.ledger = ledger
    to = tuple(f"r{i}@fabrikam.example" for i in range(5))
    job = scan("job-recut").model_copy(update={"to": to})
    await ledger.record(part_key(job.job_id, list(to[0:2])), "<job-recut@fleetmail>")  # sent, then a wait
    five = TENANT.model_copy(update={"sending_limits": SendingLimits(recipients_per_message=5)})
    edge.handler.deliverer.tenants = FakeTenants(five)
    await edge.handler.deliverer.deliver(
        job, job.function, five, edge.handler.deliverer.sender_of(job, job.function, five)
    )
    assert [r.recipients for r in edge.server.received] == [to]


async def test_a_job_sent_by_another_delivery_while_this_one_waited_is_not_sent_again() -> None:
    edge = QuotaEdge()
    ledger = FakeLedger()
    edge.handler.deliverer.ledger = ledger
    job = scan("job-meanwhile")
    sender = edge.handler.deliverer.sender_of(job, job.function, TENANT)
    # Another turn was taken just now: this delivery waits for its own, and meanwhile the
    # job's other delivery (JetStream gave it to another replica) sent it.
    gate = edge.handler.deliverer.gate
    assert gate is not None
    await gate.store.change(
        mailbox_key(TENANT.tenant_id, sender.address),
        lambda s: reserve(s, edge.clock().timestamp(), EXCHANGE, 20),
    )
    await ledger.record(job.job_id, "<job-meanwhile@fleetmail>")
    message = FakeJobMessage(job.model_dump_json().encode(), attempt=1)
    await edge.handler.handle(message)
    assert message.answers == ["ack"] and edge.server.received == []


async def test_a_job_that_waited_long_still_gets_its_whole_retry_budget() -> None:
    """Its every earlier delivery was a wait (JetStream counted 4 of its bound of 4): its first
    failure is retried, as a new message carrying one failure, not dead-lettered."""
    edge = QuotaEdge()
    edge.server.faults.append(("data", 451, "4.3.2 try later"))
    message = FakeJobMessage(scan("job-w").model_dump_json().encode(), attempt=4)
    await edge.handler.handle(message)
    assert message.answers == ["ack"] and edge.events.dead_letters == []
    assert [h[FAILURES] for h in edge.parking.put_back_headers] == ["1"]
    [deferred] = [e for e in edge.events.events if isinstance(e, MailDeferred)]
    assert deferred.attempt == 1


async def test_a_432_is_a_wait_for_a_place_not_a_failure() -> None:
    edge = QuotaEdge()
    busy = smtp_replies.CONCURRENCY_LIMIT
    edge.server.faults.append(("mail", busy.code, busy.text))
    message = FakeJobMessage(scan("job-b").model_dump_json().encode(), attempt=1)
    await edge.handler.handle(message)
    assert message.answers == ["nack"] and message.nack_delay_s == POLICY.place_poll_s
    assert not [e for e in edge.events.events if isinstance(e, MailDeferred)]
    [paced] = [e for e in edge.events.events if isinstance(e, MailPaced)]
    assert paced.next_attempt_at == edge.clock() + timedelta(seconds=POLICY.place_poll_s)


async def test_a_job_put_back_is_not_tried_before_it_is_due() -> None:
    edge = QuotaEdge()
    due = edge.clock() + timedelta(seconds=40)
    carried = {FAILURES: "2", NOT_BEFORE: due.isoformat()}
    message = FakeJobMessage(scan("job-d").model_dump_json().encode(), headers=carried)
    await edge.handler.handle(message)
    assert message.answers == ["nack"] and message.nack_delay_s == 40
    assert edge.server.received == [] and edge.events.events == []


async def test_a_job_put_back_that_was_sent_meanwhile_is_not_sent_again() -> None:
    """The message it replaced came back after all (its ack was lost) and was sent."""
    edge = QuotaEdge()
    edge.ledger.records["job-s"] = "<job-s@fleetmail>"
    message = FakeJobMessage(scan("job-s").model_dump_json().encode(), headers={FAILURES: "0"})
    await edge.handler.handle(message)
    assert message.answers == ["ack"] and edge.server.received == []


async def test_a_limits_store_out_of_reach_is_a_retry() -> None:
    edge = QuotaEdge()

    async def down(key: str, change: object) -> object:
        raise BusUnavailable("the mailbox limits bucket cannot be used", TimeoutError())

    edge.store.change = down  # type: ignore[method-assign,assignment]
    message = FakeJobMessage(scan("job-u").model_dump_json().encode())
    await edge.handler.handle(message)
    assert message.answers == ["ack"] and edge.events.dead_letters == []
    assert [h[FAILURES] for h in edge.parking.put_back_headers] == ["1"]
    [deferred] = [e for e in edge.events.events if isinstance(e, MailDeferred)]
    assert "limits of mailbox" in deferred.reason


def test_a_refused_place_changes_nothing() -> None:
    state = MailboxState(holders={"a": 200.0, "b": 200.0, "c": 200.0, "gone": 50.0})
    before = MailboxState.from_json(state.to_json())
    assert not take(state, "d", 100.0, EXCHANGE, lease_s=60)
    assert state == before  # so the limits bucket is not written for it


async def test_a_throttle_closes_the_mailboxs_turns_until_its_retry_after() -> None:
    timeline = Timeline()
    store = FakeLimitsStore()
    gate = MailboxGate(store, POLICY, timeline.clock, timeline.sleep)
    graph = MailboxLimits(concurrent=4, interval_s=0.06)
    until = timeline.clock() + timedelta(seconds=120)
    with pytest.raises(MustWait):
        async with gate.submission("acme.box", graph, None):
            raise MustWait(until, WaitKind.PACED, "429 TooManyRequests")
    with pytest.raises(MustWait) as next_job:
        async with gate.submission("acme.box", graph, None):
            pytest.fail("no job of the throttled mailbox goes before the Retry-After")
    assert next_job.value.until == until and next_job.value.kind is WaitKind.PACED
    async with gate.submission("other.box", graph, None):
        pass  # other mailboxes are not held
