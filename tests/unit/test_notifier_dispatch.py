"""Notices going out (notifier.dispatcher on fakes, notifier.domain.notices): signed
webhooks, e-mail through the relay, retries with backoff, giving up visibly, the circuit
breaker and the throttle. A manual clock, no sleeping."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from fleetmail_contracts.alerts import AlertCause, AlertSeverity
from notifier.dispatcher import Dispatcher, DispatchRules
from notifier.domain import Raise, Resolve, raised_notice, resolved_notice
from notifier.domain.notices import backoff_s, delivery

from tests.fakes.notifier import (
    FakeMailRelay,
    FakeTokenService,
    FakeWebhooks,
    InMemoryAlertStore,
    InMemoryOutbox,
    ManualClock,
)

HOOK = "https://hooks.t1.example/alerts"
SECRET = "whsec-0123456789abcdef"


@dataclass
class Channels:
    clock: ManualClock = field(default_factory=ManualClock)
    outbox: InMemoryOutbox = field(default_factory=InMemoryOutbox)
    store: InMemoryAlertStore = field(default_factory=InMemoryAlertStore)
    tokens: FakeTokenService = field(default_factory=FakeTokenService)
    webhooks: FakeWebhooks = field(default_factory=FakeWebhooks)
    relay: FakeMailRelay = field(default_factory=FakeMailRelay)
    rules: DispatchRules = field(
        default_factory=lambda: DispatchRules(
            max_attempts=4, breaker_failures=3, breaker_cooldown_s=60, per_minute=5
        )
    )

    def __post_init__(self) -> None:
        self.tokens.secrets["t1"] = SECRET
        self.dispatcher = Dispatcher(
            self.outbox, self.store, self.tokens, self.webhooks, self.relay, self.rules, clock=self.clock
        )

    async def alert(self, n: int = 0) -> dict[str, object]:
        raised = await self.store.raise_(
            Raise(
                f"t1|key{n}",
                "t1",
                AlertCause.SMTP_AUTH_DISABLED,
                AlertSeverity.CRITICAL,
                "SMTP AUTH is switched off for the sending mailbox",
                "535 5.7.139",
                "Switch SMTP AUTH on for the mailbox.",
            ),
            self.clock(),
        )
        assert raised is not None
        return raised_notice(raised)

    async def put(self, url: str = HOOK, n: int = 0, event: str = "alert.raised") -> str:
        item = delivery("t1", url, event, await self.alert(n), self.clock())
        await self.outbox.put(item)
        return item.delivery_id

    def state(self, delivery_id: str) -> tuple[str, int]:
        item = self.outbox.deliveries[delivery_id]
        return item.state, item.attempts


@pytest.fixture
def channels() -> Channels:
    return Channels()


async def test_a_webhook_gets_one_signed_call_per_notice(channels: Channels) -> None:
    delivery_id = await channels.put()
    assert await channels.dispatcher.dispatch() == 1
    assert await channels.dispatcher.dispatch() == 0  # delivered: never sent again
    [(url, body, headers)] = channels.webhooks.calls
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert url == HOOK and headers["X-Fleetmail-Signature"] == expected
    assert headers["X-Fleetmail-Event"] == "alert.raised" and headers["X-Fleetmail-Delivery"] == delivery_id
    assert json.loads(body)["cause"] == "smtp_auth_disabled"
    assert channels.state(delivery_id) == ("delivered", 0)


async def test_without_a_stored_secret_nothing_is_sent_unsigned(channels: Channels) -> None:
    channels.tokens.secrets.clear()
    delivery_id = await channels.put()
    await channels.dispatcher.dispatch()
    assert channels.webhooks.calls == []
    item = channels.outbox.deliveries[delivery_id]
    assert (item.state, item.attempts, item.last_error) == (
        "pending",
        1,
        "no webhook_secret stored for the tenant",
    )
    assert item.next_attempt_at == channels.clock.now + timedelta(seconds=60)


async def test_an_alert_e_mail_goes_through_the_relay_with_what_to_do(channels: Channels) -> None:
    notice = await channels.alert()
    await channels.outbox.put(
        delivery("t1", "mailto:ops@t1.example", "alert.raised", notice, channels.clock())
    )
    alert = await channels.store.resolve(Resolve("t1|key0", "a message was sent again"), channels.clock())
    assert alert is not None
    resolved = resolved_notice(alert, "a message was sent again")
    await channels.outbox.put(
        delivery("t1", "mailto:ops@t1.example", "alert.resolved", resolved, channels.clock())
    )
    assert await channels.dispatcher.dispatch() == 2
    raised_mail, resolved_mail = channels.relay.messages
    assert raised_mail["From"] == "alerts@fleetmail.example" and raised_mail["To"] == "ops@t1.example"
    assert raised_mail["Subject"] == "[fleetmail] SMTP AUTH is switched off for the sending mailbox"
    assert "What to do: Switch SMTP AUTH on for the mailbox." in raised_mail.get_content()
    assert resolved_mail["Subject"].startswith("[fleetmail] Recovered: SMTP AUTH")
    assert "Recovered: a message was sent again" in resolved_mail.get_content()
    assert channels.tokens.secret_requests == 0  # e-mail needs no webhook secret


async def test_a_failed_call_is_retried_later_with_backoff(channels: Channels) -> None:
    channels.webhooks.down.add(HOOK)
    delivery_id = await channels.put()
    for attempt in (1, 2):
        await channels.dispatcher.dispatch()
        assert channels.state(delivery_id) == ("pending", attempt)
        assert channels.outbox.deliveries[delivery_id].last_error == "ConnectError"
        channels.clock.advance(backoff_s(attempt) - 0.001)
        assert await channels.outbox.due(channels.clock(), 100) == []  # not before its time
        channels.clock.advance(0.001)
    channels.webhooks.down.clear()
    assert await channels.dispatcher.dispatch() == 1
    assert channels.state(delivery_id) == ("delivered", 2) and len(channels.webhooks.calls) == 1
    assert [backoff_s(n) for n in (1, 2, 3, 10, 20)] == [1, 2, 4, 300, 300]


async def test_a_notice_that_runs_out_of_attempts_gives_up_and_is_named_on_its_alert(
    channels: Channels,
) -> None:
    channels.relay.down = True
    delivery_id = await channels.put("mailto:ops@t1.example")
    for _ in range(channels.rules.max_attempts):
        await channels.dispatcher.dispatch()
        channels.clock.advance(301)  # past any backoff and any open circuit
    assert channels.state(delivery_id) == ("failed", 4)
    [failing] = await channels.outbox.failing("t1")
    assert failing.delivery_id == delivery_id
    [alert] = await channels.store.list_alerts("t1", None, include_resolved=True)
    assert alert.channel_problems == ("mailto:ops@t1.example: gave up (SMTPConnectError: the relay is down)",)
    channels.relay.down = False
    channels.clock.advance(3600)
    assert await channels.dispatcher.dispatch() == 0  # given up is given up


async def test_an_endpoint_that_keeps_failing_rests_then_is_tried_again(channels: Channels) -> None:
    channels.webhooks.down.add(HOOK)
    first = await channels.put(n=0)
    await channels.dispatcher.dispatch()
    channels.clock.advance(1)
    await channels.dispatcher.dispatch()
    channels.clock.advance(2)
    await channels.dispatcher.dispatch()  # the third failure opens the circuit
    assert channels.state(first) == ("pending", 3)
    second = await channels.put(n=1)  # another notice to the same endpoint
    channels.clock.advance(59)
    channels.webhooks.down.clear()
    await channels.dispatcher.dispatch()
    assert channels.webhooks.calls == []  # resting: nothing is sent to it
    assert channels.state(first) == ("pending", 3) and channels.state(second) == ("pending", 0)
    channels.clock.advance(1)
    assert await channels.dispatcher.dispatch() == 2
    assert len(channels.webhooks.calls) == 2


async def test_past_the_throttle_notices_wait_for_the_next_minute_without_spending_attempts(
    channels: Channels,
) -> None:
    ids = [await channels.put(n=n) for n in range(7)]
    assert await channels.dispatcher.dispatch() == 5  # per_minute
    waiting = [channels.outbox.deliveries[i] for i in ids if channels.state(i)[0] == "pending"]
    assert len(waiting) == 2 and all(d.attempts == 0 and d.last_error == "throttled" for d in waiting)
    assert {d.next_attempt_at for d in waiting} == {channels.clock.now + timedelta(seconds=60)}
    channels.clock.advance(59)
    assert await channels.dispatcher.dispatch() == 0
    channels.clock.advance(1)
    assert await channels.dispatcher.dispatch() == 2
    assert await channels.outbox.failing("t1") == []


async def test_a_recipient_queued_before_the_rule_is_given_up_at_once_and_the_round_goes_on(
    channels: Channels,
) -> None:
    """A line break in a recipient made the message's header raise and ended the whole round,
    so no alert mail went out at all; a list added recipients on the operator's relay."""
    broken = await channels.put("mailto:ops@t1.example\r\nBcc: everyone@elsewhere.example", n=0)
    listed = await channels.put("mailto:ops@t1.example, boss@elsewhere.example", n=1)
    good = await channels.put("mailto:ops@t1.example", n=2)
    assert await channels.dispatcher.dispatch() == 1
    assert channels.state(broken) == ("failed", 1) and channels.state(listed) == ("failed", 1)
    assert channels.state(good) == ("delivered", 0)
    assert [m["To"] for m in channels.relay.messages] == ["ops@t1.example"]
    problems = [p for a in await channels.store.list_alerts("t1", None, True) for p in a.channel_problems]
    assert len(problems) == 2 and all("not a single e-mail address" in p for p in problems)


async def test_a_webhook_the_outbound_rule_refuses_is_given_up_at_once_and_named(channels: Channels) -> None:
    channels.webhooks.refused.add(HOOK)
    delivery_id = await channels.put()
    await channels.dispatcher.dispatch()
    assert channels.state(delivery_id) == ("failed", 1)
    [alert] = await channels.store.list_alerts("t1", None, include_resolved=True)
    assert alert.channel_problems == (f"{HOOK}: gave up (webhook: destination {HOOK} is in a private range)",)
