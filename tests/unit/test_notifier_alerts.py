"""The notifier's use cases on fakes (notifier.service): events in; alerts, alert events and
notices out. No servers, a manual clock, no sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fleetmail_contracts.alerts import AcknowledgeAlert, AlertCause, AlertSeverity, AlertState, ListAlerts
from fleetmail_contracts.tenants import NotificationSettings, TenantSettings, WebhookChannel
from fleetmail_contracts.tokens import GrantStatus, GrantView, Principal, PrincipalKind, Provider
from notifier.domain import (
    FailureRate,
    Raise,
    administrator_key,
    administrator_prompt_key,
    configuration_key,
    unreachable_key,
)
from notifier.domain.notices import (
    NO_ADMINISTRATOR_ADDRESS,
    NO_RELAY,
    OUTSIDE_DOMAINS,
    SIGN_IN_NOTICE,
    email_of,
)
from notifier.service import AlertRules, AlertService

from tests.fakes.notifier import (
    AlertTable,
    FakeTenants,
    FakeTokenService,
    InMemoryAlertStore,
    InMemoryOutbox,
    ManualClock,
    RecordingPublisher,
)

HOOK = "https://hooks.t1.example/alerts"
OPS = "ops@t1.example"
ADMIN = {"tenant_id": "t1", "kind": "administrator", "address": "admin@t1.example"}
UNREACHABLE_AFTER = timedelta(minutes=15)


def t1(**changes: Any) -> TenantSettings:
    notifications = NotificationSettings(webhooks=(WebhookChannel(url=HOOK),), email_recipients=(OPS,))
    return TenantSettings(tenant_id="t1", oauth_enabled=True, notifications=notifications, **changes)


@dataclass
class World:
    clock: ManualClock = field(default_factory=ManualClock)
    table: AlertTable = field(default_factory=AlertTable)
    outbox: InMemoryOutbox = field(default_factory=InMemoryOutbox)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    tenants: FakeTenants = field(default_factory=lambda: FakeTenants(t1()))
    tokens: FakeTokenService = field(default_factory=FakeTokenService)
    relay: bool = True

    async def replica(self) -> AlertService:
        """A notifier replica, started: its store loaded from the shared table."""
        store = InMemoryAlertStore(self.table)
        await store.load()
        return AlertService(
            store,
            self.outbox,
            self.publisher,
            self.tenants,
            self.tokens,
            FailureRate(threshold=0.5, window=10, min_samples=4),
            AlertRules(UNREACHABLE_AFTER, timedelta(days=14), mail_relay=self.relay),
            clock=self.clock,
        )

    def at(self, seconds: float = 0) -> str:
        """An event time, `seconds` from the clock's now."""
        return (self.clock.now + timedelta(seconds=seconds)).isoformat()

    def alerts(self, tenant_id: str = "t1") -> list[dict[str, Any]]:
        return [d for d in self.table.alerts.values() if d["tenant_id"] == tenant_id]

    def notices(self, event: str) -> list[str]:
        return sorted(d.url for d in self.outbox.deliveries.values() if d.event == event)


@pytest.fixture
def world() -> World:
    return World()


def job_failed(world: World, reason: str, seconds: float = 0, **more: Any) -> dict[str, Any]:
    return {
        "kind": "failed",
        "tenant_id": "t1",
        "reason_code": reason,
        "detail": "the job failed",
        "occurred_at": world.at(seconds),
        **more,
    }


def sent(world: World, seconds: float = 0) -> dict[str, Any]:
    return {"kind": "sent", "tenant_id": "t1", "occurred_at": world.at(seconds)}


def token_event(world: World, kind: str, seconds: float = 0, **more: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "principal": ADMIN,
        "provider": "microsoft",
        "occurred_at": world.at(seconds),
        **more,
    }


async def test_a_dead_grant_is_one_alert_one_event_and_one_notice_per_channel(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_token_event(token_event(world, "reauthorization_required", error="invalid_grant"))
    [alert] = world.alerts()
    assert alert["cause"] == AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED.value
    [event] = world.publisher.raised()
    assert (event.alert_id, event.dedupe_key) == (alert["alert_id"], administrator_key("t1"))
    assert event.event_id == f"{alert['alert_id']}-raised" and event.occurred_at == world.clock.now
    assert event.title == alert["title"] and event.remedy == alert["remedy"]
    assert world.notices("alert.raised") == [HOOK, f"mailto:{OPS}"]


async def test_a_thousand_jobs_failing_on_one_dead_grant_are_one_alert_raised_once(world: World) -> None:
    notifier = await world.replica()
    for n in range(1000):
        await notifier.on_mail_event(job_failed(world, "reauthorization_required", n / 100))
    [alert] = world.alerts()
    assert alert["occurrences"] == 1  # the flood cost nothing: this replica knew it was open
    assert len(world.publisher.raised()) == 1
    assert len(world.outbox.deliveries) == 2  # one per channel
    # A second replica that starts now raises nothing either.
    other = await world.replica()
    await other.on_mail_event(job_failed(world, "reauthorization_required", 11))
    assert len(world.alerts()) == 1 and len(world.publisher.raised()) == 1


async def test_the_alert_resolves_when_the_grant_works_again_and_says_so(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_mail_event(job_failed(world, "reauthorization_required"))
    world.clock.advance(60)
    await notifier.on_token_event(token_event(world, "acquired", flow="device_code"))
    [alert] = world.alerts()
    assert alert["state"] == AlertState.RESOLVED.value
    [resolved] = world.publisher.resolved()
    assert resolved.alert_id == alert["alert_id"] and resolved.event_id == f"{alert['alert_id']}-resolved"
    assert resolved.detail == "Recovered: the refresh token for admin@t1.example works again (acquired)"
    assert world.notices("alert.resolved") == [HOOK, f"mailto:{OPS}"]
    assert (await notifier.list_alerts(ListAlerts(tenant_id="t1"))).alerts == ()  # no longer live


async def test_a_failure_older_than_the_recovery_reopens_nothing_on_any_replica(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_mail_event(job_failed(world, "reauthorization_required", 0))
    await notifier.on_token_event(token_event(world, "acquired", 10, flow="device_code"))
    late = [job_failed(world, "reauthorization_required", s) for s in (2, 5, 9.999, 10)]
    for event in late:
        await notifier.on_mail_event(event)
    fresh = await world.replica()
    for event in late:
        await fresh.on_mail_event(event)
    assert [a["state"] for a in world.alerts()] == ["resolved"]
    assert (len(world.publisher.raised()), len(world.publisher.resolved())) == (1, 1)
    # A failure after the recovery is a new alert.
    await fresh.on_mail_event(job_failed(world, "reauthorization_required", 20))
    assert [a["state"] for a in world.alerts()] == ["open"] and len(world.publisher.raised()) == 2


async def test_a_success_older_than_the_failure_resolves_nothing(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_mail_event(job_failed(world, "smtp_auth_disabled", 30))
    await notifier.on_mail_event(sent(world, 25))  # read late: it happened before the failure
    assert [a["state"] for a in world.alerts()] == ["open"] and world.publisher.resolved() == []
    await notifier.on_mail_event(sent(world, 40))
    assert [a["state"] for a in world.alerts()] == ["resolved"]


async def test_a_redelivered_event_publishes_and_notifies_nothing_new(world: World) -> None:
    dead = token_event(world, "reauthorization_required", error="invalid_grant")
    notifier = await world.replica()
    await notifier.on_token_event(dead)
    restarted = await world.replica()
    await restarted.on_token_event(dead)
    assert len(world.publisher.raised()) == 1 and len(world.outbox.deliveries) == 2


async def test_a_provider_not_answering_longer_than_the_setting_is_an_alert_until_it_answers(
    world: World,
) -> None:
    notifier = await world.replica()
    await notifier.on_token_event(token_event(world, "refresh_failed", error="HTTP 503"))
    key = unreachable_key("t1", "administrator", "admin@t1.example")
    world.clock.advance(UNREACHABLE_AFTER.total_seconds() - 1)
    await notifier.raise_lasting_conditions()
    assert world.alerts() == []  # not yet longer than the setting
    world.clock.advance(61)
    await notifier.raise_lasting_conditions()
    await notifier.raise_lasting_conditions()  # every round: still one alert
    [alert] = world.alerts()
    assert alert["cause"] == AlertCause.PROVIDER_UNREACHABLE.value and alert["state"] == "open"
    assert alert["title"] == "microsoft has not answered for 16 minutes"
    assert len(world.publisher.raised()) == 1
    await notifier.on_token_event(token_event(world, "refreshed", rotated=False))
    assert [a["state"] for a in world.alerts()] == ["resolved"]
    assert not await notifier.store.condition_exists(key)
    await notifier.raise_lasting_conditions()
    assert [a["state"] for a in world.alerts()] == ["resolved"]


async def test_a_provider_that_answers_while_the_round_raises_leaves_no_alert_open(world: World) -> None:
    class AnsweredMeanwhile(InMemoryAlertStore):
        """Another replica ends the condition between this round's read and its raise."""

        async def raise_(self, action: Raise, now: datetime) -> Any:
            raised = await super().raise_(action, now)
            self.table.conditions.pop(action.key, None)
            return raised

    notifier = await world.replica()
    notifier.store = AnsweredMeanwhile(world.table)
    await notifier.on_token_event(token_event(world, "refresh_failed", error="HTTP 503"))
    world.clock.advance(UNREACHABLE_AFTER.total_seconds() + 1)
    await notifier.raise_lasting_conditions()
    assert [a["state"] for a in world.alerts()] == ["resolved"]
    [resolved] = world.publisher.resolved()
    assert resolved.detail == "Recovered: the identity provider answers again"


async def test_a_short_outage_raises_nothing(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_token_event(token_event(world, "refresh_failed", error="HTTP 503"))
    world.clock.advance(60)
    await notifier.on_token_event(token_event(world, "recovered"))
    world.clock.advance(UNREACHABLE_AFTER.total_seconds())
    await notifier.raise_lasting_conditions()
    assert world.alerts() == [] and world.publisher.events == []


async def test_the_failure_rate_alert_has_hysteresis(world: World) -> None:
    notifier = await world.replica()
    for reason in ("smtp_rejected", None, "smtp_rejected", "recipients_rejected"):
        await notifier.on_mail_event(job_failed(world, reason) if reason else sent(world))
    [alert] = world.alerts()
    assert alert["cause"] == AlertCause.DELIVERY_FAILURE_RATE.value
    for _ in range(6):  # 3 of 5 … 3 of 10 failed: above half the threshold
        await notifier.on_mail_event(sent(world))
    assert [a["state"] for a in world.alerts()] == ["open"]
    await notifier.on_mail_event(sent(world))  # 2 of 10
    assert [a["state"] for a in world.alerts()] == ["resolved"]
    assert (len(world.publisher.raised()), len(world.publisher.resolved())) == (1, 1)


async def test_a_configuration_error_asks_for_a_setting_not_a_sign_in_until_a_message_goes_out(
    world: World,
) -> None:
    notifier = await world.replica()
    detail = "tenant 't1' has no Microsoft app (client) id: set the tenant's identity.client_id"
    for n in range(5):
        await notifier.on_mail_event(job_failed(world, "configuration_error", n, detail=detail))
    [alert] = world.alerts()
    assert alert["cause"] == AlertCause.CONFIGURATION_ERROR.value and alert["for_administrators"]
    assert detail in alert["detail"] and "re-authorization" not in alert["title"]
    assert world.table.alerts.get(administrator_key("t1")) is None
    assert world.notices("alert.raised") == [HOOK, f"mailto:{OPS}"]
    await notifier.on_mail_event(sent(world, 10))
    assert world.table.alerts[configuration_key("t1")]["state"] == "resolved"
    [resolved] = world.publisher.resolved()
    assert resolved.cause is AlertCause.CONFIGURATION_ERROR


async def test_a_user_who_must_sign_in_is_on_the_device_feed_only(world: World) -> None:
    notifier = await world.replica()
    parked = {"kind": "parked", "tenant_id": "t1", "user": "u@t1.example", "device_id": "floor1"}
    await notifier.on_mail_event(parked)
    [alert] = world.alerts()
    assert not alert["for_administrators"] and alert["device_id"] == "floor1"
    assert world.outbox.deliveries == {}  # no webhook or e-mail for administrators
    assert len(world.publisher.raised()) == 1  # the event still goes out
    floor2 = await notifier.list_alerts(ListAlerts(tenant_id="t1", device_id="floor2"))
    floor1 = await notifier.list_alerts(ListAlerts(tenant_id="t1", device_id="floor1"))
    assert floor2.alerts == () and [a.principal_address for a in floor1.alerts] == ["u@t1.example"]


def asks_for_sign_in_by_mail(**changes: Any) -> TenantSettings:
    tenant = t1(**changes)
    notifications = tenant.notifications.model_copy(update={"sign_in_email": True})
    return tenant.model_copy(update={"notifications": notifications})


async def test_a_user_who_must_sign_in_is_asked_by_mail_for_the_administrator_when_the_tenant_wants_it(
    world: World,
) -> None:
    world.tenants = FakeTenants(asks_for_sign_in_by_mail(administrator_address="admin@t1.example"))
    notifier = await world.replica()
    parked = {"kind": "parked", "tenant_id": "t1", "user": "u@t1.example", "device_id": "floor1"}
    await notifier.on_mail_event(parked)
    await notifier.on_mail_event(parked | {"occurred_at": world.at(5)})  # a second job: no second mail
    assert world.notices(SIGN_IN_NOTICE) == ["mailto:u@t1.example"]
    assert world.notices("alert.raised") == []  # still nothing for administrators
    [item] = world.outbox.deliveries.values()
    message = email_of(item, "relay@fleetmail.example")
    # From the relay's own address: the administrator address is the tenant's to choose.
    assert message["From"] == "relay@fleetmail.example" and message["To"] == "u@t1.example"
    assert message["Reply-To"] == "admin@t1.example" and message["Sender"] is None
    text = message.get_content()
    assert "device floor1" in text and "sign in as u@t1.example" in text and "admin@t1.example" in text
    assert message["Subject"] == "[fleetmail] Sign in to send your job" and "A job you sent" in text


async def test_a_dead_sign_in_with_no_job_waiting_is_not_worded_as_a_waiting_job(world: World) -> None:
    world.tenants = FakeTenants(asks_for_sign_in_by_mail(administrator_address="admin@t1.example"))
    notifier = await world.replica()
    user = {"tenant_id": "t1", "kind": "user", "address": "u@t1.example"}
    await notifier.on_token_event(token_event(world, "reauthorization_required", principal=user))
    [item] = world.outbox.deliveries.values()
    message = email_of(item, "relay@fleetmail.example")
    assert message["To"] == "u@t1.example"
    assert "job" not in message["Subject"] and "A job you sent" not in message.get_content()
    assert "no longer accepted" in message.get_content()


async def test_no_sign_in_mail_to_an_address_outside_the_tenants_mail_domains(world: World) -> None:
    world.tenants = FakeTenants(asks_for_sign_in_by_mail(administrator_address="admin@t1.example"))
    notifier = await world.replica()
    parked = {"kind": "parked", "tenant_id": "t1", "user": "victim@elsewhere.example", "device_id": "floor1"}
    await notifier.on_mail_event(parked)
    assert world.outbox.deliveries == {}
    [alert] = world.alerts()
    assert alert["channel_problems"] == [OUTSIDE_DOMAINS]


async def test_no_sign_in_mail_by_default_nor_without_a_way_to_send_it(world: World) -> None:
    parked = {"kind": "parked", "tenant_id": "t1", "user": "u@t1.example", "device_id": "floor1"}
    world.tenants = FakeTenants(t1(administrator_address="admin@t1.example"))
    await (await world.replica()).on_mail_event(parked)
    assert world.outbox.deliveries == {}, "off unless the tenant turns it on"
    for tenant, relay, problem in (
        (asks_for_sign_in_by_mail(), True, NO_ADMINISTRATOR_ADDRESS),
        (asks_for_sign_in_by_mail(administrator_address="admin@t1.example"), False, NO_RELAY),
    ):
        other = World(tenants=FakeTenants(tenant), relay=relay)
        await (await other.replica()).on_mail_event(parked)
        assert other.outbox.deliveries == {}
        [alert] = other.alerts()
        assert alert["channel_problems"] == [problem]


async def test_without_a_relay_e_mail_recipients_get_nothing_and_the_alert_says_so(world: World) -> None:
    world.relay = False
    notifier = await world.replica()
    await notifier.on_mail_event(job_failed(world, "reauthorization_required"))
    assert world.notices("alert.raised") == [HOOK]
    [alert] = world.alerts()
    assert alert["channel_problems"] == [NO_RELAY]


async def test_an_unknown_tenant_gets_no_notices_but_its_alert_is_kept(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_mail_event(job_failed(world, "reauthorization_required") | {"tenant_id": "gone"})
    assert len(world.alerts("gone")) == 1 and world.outbox.deliveries == {}
    assert len(world.publisher.raised()) == 1


async def test_an_acknowledged_alert_still_resolves(world: World) -> None:
    notifier = await world.replica()
    await notifier.on_mail_event(job_failed(world, "smtp_auth_disabled"))
    [alert] = world.alerts()
    acknowledged = await notifier.acknowledge(
        AcknowledgeAlert(tenant_id="t1", alert_id=alert["alert_id"], by="a")
    )
    assert [a.state for a in acknowledged.alerts] == [AlertState.ACKNOWLEDGED]
    await notifier.on_mail_event(sent(world, 1))
    assert [a["state"] for a in world.alerts()] == ["resolved"]


async def test_the_scan_raises_expiring_grants_of_oauth_tenants_only(world: World) -> None:
    world.tenants.tenants["off"] = TenantSettings(tenant_id="off", oauth_enabled=False)
    for tenant_id in ("t1", "off"):
        world.tokens.grants[tenant_id] = [
            GrantView(
                principal=Principal(
                    tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address="a@x.example"
                ),
                provider=Provider.GOOGLE,
                status=GrantStatus.ACTIVE,
                scopes=(),
                acquired_at=world.clock.now,
                predicted_death_at=world.clock.now + timedelta(days=7),
            )
        ]
    notifier = await world.replica()
    await notifier.scan()
    await notifier.scan()
    [alert] = world.alerts("t1")
    assert alert["cause"] == AlertCause.GRANT_EXPIRING.value and world.alerts("off") == []
    assert len(world.publisher.raised()) == 1


async def test_oauth_turned_on_without_an_administrator_raises_the_prompt_at_once_until_acquire(
    world: World,
) -> None:
    notifier = await world.replica()
    on = t1(administrator_address="admin@t1.example")
    before = on.model_copy(update={"oauth_enabled": False})
    await notifier.on_tenant_changed(before, on)
    [alert] = world.alerts()
    assert alert["cause"] == AlertCause.ADMINISTRATOR_NOT_SIGNED_IN.value and alert["device_id"] is None
    assert world.notices("alert.raised") == sorted([HOOK, f"mailto:{OPS}"])
    # A change of anything else asks nothing and raises nothing again.
    await notifier.on_tenant_changed(on, on.model_copy(update={"provider": on.provider}))
    assert len(world.publisher.raised()) == 1
    world.clock.advance(5)
    await notifier.on_token_event({"kind": "acquired", "principal": ADMIN, "occurred_at": world.at()})
    assert [a["state"] for a in world.alerts()] == ["resolved"]


async def test_the_prompt_from_grants_read_before_the_acquire_does_not_reopen_it(world: World) -> None:
    notifier = await world.replica()
    on = t1(administrator_address="admin@t1.example")
    asked_at = world.at()
    await notifier.on_tenant_changed(None, on)
    world.clock.advance(5)
    await notifier.on_token_event({"kind": "acquired", "principal": ADMIN, "occurred_at": world.at()})
    # The same read of the grants (no administrator yet), acted on late: the acquire has the last word.
    stale = [
        Raise(
            administrator_prompt_key("t1"),
            "t1",
            AlertCause.ADMINISTRATOR_NOT_SIGNED_IN,
            AlertSeverity.CRITICAL,
            "late",
            "late",
            observed_at=datetime.fromisoformat(asked_at),
        )
    ]
    await notifier.apply(stale)
    assert [a["state"] for a in world.alerts()] == ["resolved"]


async def test_oauth_turned_off_resolves_the_prompt(world: World) -> None:
    notifier = await world.replica()
    on = t1(administrator_address="admin@t1.example")
    await notifier.on_tenant_changed(None, on)
    assert [a["state"] for a in world.alerts()] == ["open"]
    world.clock.advance(1)
    await notifier.on_tenant_changed(on, on.model_copy(update={"oauth_enabled": False}))
    assert [a["state"] for a in world.alerts()] == ["resolved"]
