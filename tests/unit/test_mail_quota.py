"""A mailbox's daily quota counted by fleetmail itself, on an injected clock: jobs past it wait
for the rolling window instead of being sent and refused, every replica counts in the same
state, the state stays small, and a provider's quota reply waits for the window, not a probe."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from fleetmail_contracts.mail_events import MailWaitingForQuota
from fleetmail_contracts.tenants import SendingLimits
from fleetmail_contracts.tokens import Provider
from fleetmail_runtime import smtp_replies
from mail_service.domain.limits import (
    DAY_S,
    MailboxLimits,
    MailboxState,
    Turn,
    Wait,
    WaitKind,
    reserve,
    uncount,
)
from mail_service.errors import MailboxBusy, MustWait, QuotaExceeded, SentMeanwhile, SmtpTransient
from mail_service.pacing import MailboxGate, PacingPolicy

from tests.fakes.mail import FakeClock, FakeJobMessage, FakeLimitsStore
from tests.unit.test_mail_handler import TENANT, scan
from tests.unit.test_mail_pacing import QuotaEdge

HOUR_S = DAY_S / 24
EXCHANGE = MailboxLimits(concurrent=3, interval_s=0.0, daily_quota=10_000, quota_counts_recipients=True)
GMAIL = MailboxLimits(concurrent=3, interval_s=0.0, daily_quota=2_000, quota_counts_recipients=False)
POLICY = PacingPolicy(horizon_s=2, lease_s=180, place_poll_s=0.5)
T0 = 1_000 * DAY_S  # midnight: hour buckets start here


def test_exchange_counts_recipients_and_a_message_past_the_quota_waits_for_the_window() -> None:
    state = MailboxState()
    assert reserve(state, T0, EXCHANGE, 2, units=6_000) == Turn(T0, 6_000)
    assert reserve(state, T0 + 2 * HOUR_S, EXCHANGE, 2, units=4_000) == Turn(T0 + 2 * HOUR_S, 4_000)
    # 10,000 recipients in the window: one more waits until the first hour's sends leave it.
    late = reserve(state, T0 + 5 * HOUR_S, EXCHANGE, 2, units=1)
    assert late == Wait(T0 + HOUR_S + DAY_S, WaitKind.WAITING_FOR_QUOTA)
    # 6,001 more need both hours gone.
    assert reserve(state, T0 + 5 * HOUR_S, EXCHANGE, 2, units=6_001) == Wait(
        T0 + 3 * HOUR_S + DAY_S, WaitKind.WAITING_FOR_QUOTA
    )
    assert isinstance(reserve(state, T0 + HOUR_S + DAY_S, EXCHANGE, 2, units=6_000), Turn)


def test_gmail_counts_messages_whatever_their_recipients() -> None:
    assert GMAIL.units(50) == 1 and EXCHANGE.units(50) == 50
    state = MailboxState()
    for i in range(2_000):
        assert isinstance(reserve(state, T0 + i, GMAIL, 2, GMAIL.units(50)), Turn)
    assert reserve(state, T0 + 2_000, GMAIL, 2, 1) == Wait(T0 + HOUR_S + DAY_S, WaitKind.WAITING_FOR_QUOTA)


def test_the_count_stays_small_however_long_the_mailbox_sends() -> None:
    state = MailboxState()
    for minute in range(7 * 24 * 60):  # a week, a message a minute
        assert isinstance(reserve(state, T0 + 60 * minute, GMAIL, 2), Turn)
    assert len(state.sent) <= 25  # hour buckets over one day, not one entry per message
    assert sum(state.sent.values()) <= 25 * 60
    assert MailboxState.from_json(state.to_json()) == state


def test_a_turn_that_sent_nothing_gives_its_count_back() -> None:
    state = MailboxState()
    turn = reserve(state, T0, EXCHANGE, 2, units=10_000)
    assert isinstance(turn, Turn)
    assert isinstance(reserve(state, T0, EXCHANGE, 2, units=1), Wait)
    uncount(state, turn, EXCHANGE)
    assert state.sent == {} and isinstance(reserve(state, T0, EXCHANGE, 2, units=1), Turn)


def test_a_message_with_more_recipients_than_the_quota_goes_alone_in_an_empty_window() -> None:
    small = replace(EXCHANGE, daily_quota=3)
    state = MailboxState()
    assert reserve(state, T0, small, 2, units=5) == Turn(T0, 3)
    assert isinstance(reserve(state, T0, small, 2, units=1), Wait)


async def test_replicas_count_in_one_state_and_jobs_past_the_quota_wait_with_the_remedy() -> None:
    clock = FakeClock()
    store = FakeLimitsStore()
    quota = replace(GMAIL, daily_quota=3)
    replicas = [MailboxGate(store, POLICY, clock) for _ in range(3)]
    for gate in replicas:  # one message through each replica
        async with gate.submission("acme.box", quota, None):
            pass
    first = clock()
    clock.advance(600)
    with pytest.raises(MustWait) as waited:
        async with replicas[0].submission("acme.box", quota, None):
            pytest.fail("past the quota: not sent")
    assert waited.value.kind is WaitKind.WAITING_FOR_QUOTA
    assert waited.value.remedy == smtp_replies.QUOTA_REMEDY and waited.value.smtp_reply is None
    # It goes when the first sends leave the rolling 24 hours (at the end of their hour bucket).
    bucket_end = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert waited.value.until == bucket_end + timedelta(days=1)
    clock.now = waited.value.until
    async with replicas[1].submission("acme.box", quota, None):
        pass


async def test_a_quota_reply_waits_until_the_oldest_counted_send_leaves_the_window() -> None:
    clock = FakeClock()
    store = FakeLimitsStore()
    gate = MailboxGate(store, POLICY, clock)
    async with gate.submission("acme.box", EXCHANGE, None, recipients=2):
        pass
    first = clock()
    clock.advance(3 * HOUR_S)
    with pytest.raises(MustWait) as waited:
        async with gate.submission("acme.box", EXCHANGE, None, recipients=5):
            raise QuotaExceeded("554 5.2.0 …", smtp_replies.QUOTA_REMEDY)
    bucket_end = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert waited.value.until == bucket_end + timedelta(days=1)  # not a fixed probe
    assert waited.value.kind is WaitKind.WAITING_FOR_QUOTA
    assert sum(store.states["acme.box"].sent.values()) == 2  # the refused message is not counted
    clock.now = waited.value.until - timedelta(seconds=1)
    with pytest.raises(MustWait):
        async with gate.submission("acme.box", EXCHANGE, None):
            pytest.fail("closed until the window frees")


async def test_a_432_gives_the_quota_count_back() -> None:
    clock = FakeClock()
    store = FakeLimitsStore()
    gate = MailboxGate(store, POLICY, clock)
    with pytest.raises(MustWait):
        async with gate.submission("acme.box", EXCHANGE, None, recipients=7):
            raise MailboxBusy("432 4.3.2 Concurrent connections limit exceeded")
    assert sum(store.states["acme.box"].sent.values()) == 0


@pytest.mark.parametrize(
    "failure",
    [SmtpTransient("421 4.7.0 Try again later"), SentMeanwhile("sent by another replica")],
    ids=["server-refused-for-now", "sent-meanwhile"],
)
async def test_a_turn_that_failed_gives_its_count_back(failure: Exception) -> None:
    """A server down for a day must not use up the quota with retries that sent nothing."""
    clock = FakeClock()
    store = FakeLimitsStore()
    gate = MailboxGate(store, POLICY, clock)
    for _ in range(3):
        with pytest.raises(type(failure)):
            async with gate.submission("acme.box", EXCHANGE, None, recipients=500):
                raise failure
    assert sum(store.states["acme.box"].sent.values()) == 0


async def test_a_job_past_the_tenants_quota_is_deferred_not_sent() -> None:
    edge = QuotaEdge()
    tenant = TENANT.model_copy(update={"sending_limits": SendingLimits(daily_quota=1)})
    edge.handler.deliverer.tenants.tenants[tenant.tenant_id] = tenant  # type: ignore[attr-defined]
    deliverer = edge.handler.deliverer
    assert deliverer.limits_of(tenant) is not None
    assert deliverer.limits_of(tenant).daily_quota == 1  # type: ignore[union-attr]
    deliverer.provider_limits[Provider.MICROSOFT] = replace(
        deliverer.provider_limits[Provider.MICROSOFT], daily_quota=10_000
    )
    sent = FakeJobMessage(scan("job-1").model_dump_json().encode(), attempt=1)
    await edge.handler.handle(sent)
    assert sent.answers == ["ack"] and len(edge.server.received) == 1
    waiting = FakeJobMessage(scan("job-2").model_dump_json().encode(), attempt=1)
    await edge.handler.handle(waiting)
    assert waiting.answers == ["nack"] and len(edge.server.received) == 1  # never sent, never refused
    [event] = [e for e in edge.events.events if isinstance(e, MailWaitingForQuota)]
    assert event.remedy == smtp_replies.QUOTA_REMEDY
    assert waiting.nack_delay_s is not None and waiting.nack_delay_s > DAY_S - HOUR_S
