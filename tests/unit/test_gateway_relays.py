"""What job-gateway asks token-service and the notifier, and how their refusals and silence
become its own errors (a scripted requester in place of the bus)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleetmail_contracts.alerts import (
    ALERT_ACKNOWLEDGE_SUBJECT,
    ALERT_LIST_SUBJECT,
    AlertCause,
    AlertList,
    AlertSeverity,
    AlertState,
    AlertView,
)
from fleetmail_contracts.credentials import SET_CREDENTIALS_SUBJECT
from fleetmail_contracts.rpc import RpcFailure
from fleetmail_contracts.tenants import IdentitySettings, TenantSettings
from fleetmail_contracts.tokens import (
    START_ACQUISITION_SUBJECT,
    AcquisitionFlow,
    AcquisitionStarted,
    StartAcquisition,
)
from job_gateway.domain import Device
from job_gateway.errors import (
    AcquisitionRefused,
    AlertNotFound,
    EventBusUnavailable,
    InvalidAddress,
    NoAdministratorAddress,
    NotifierUnavailable,
    OutsideTenantDomains,
    ServiceFailed,
    TokenServiceUnavailable,
    UserRequired,
)
from job_gateway.schemas import CredentialsInput, DeviceRegistration, DeviceReport
from job_gateway.settings import GatewaySettings
from job_gateway.use_cases import AlertRelay, DeviceDirectory, DeviceEvents, TokenRelay

from tests.fakes.gateway import InMemoryGatewayStore, RecordingPublisher, ScriptedRequester

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = GatewaySettings(public_url="https://fleetmail.example/")
TENANT = TenantSettings(tenant_id="t1", administrator_address="admin@t1.example")


def started(error: str | None = None) -> AcquisitionStarted:
    return AcquisitionStarted(
        acquisition_id="a1", flow=AcquisitionFlow.DEVICE_CODE, expires_at=NOW, user_code="ABC", error=error
    )


def alert(alert_id: str, for_administrators: bool = True) -> AlertView:
    return AlertView(
        alert_id=alert_id,
        tenant_id="t1",
        cause=AlertCause.GRANT_EXPIRING,
        severity=AlertSeverity.WARNING,
        state=AlertState.OPEN,
        title="t",
        detail="d",
        for_administrators=for_administrators,
        raised_at=NOW,
        last_seen_at=NOW,
    )


async def test_the_administrators_sign_in_is_the_tenants_default_and_redirects_here() -> None:
    bus = ScriptedRequester()
    bus.answers[START_ACQUISITION_SUBJECT] = started()
    tokens = TokenRelay(bus, SETTINGS)
    app_only = TENANT.model_copy(update={"identity": IdentitySettings(app_only=True)})
    await tokens.start_administrator_sign_in(TENANT, None)
    await tokens.start_administrator_sign_in(app_only, None)
    await tokens.start_administrator_sign_in(TENANT, AcquisitionFlow.AUTHORIZATION_CODE)
    asked = [message for _, message in bus.asked]
    assert all(isinstance(m, StartAcquisition) for m in asked)
    assert [m.flow for m in asked if isinstance(m, StartAcquisition)] == [
        AcquisitionFlow.DEVICE_CODE,
        AcquisitionFlow.APP_ONLY,
        AcquisitionFlow.AUTHORIZATION_CODE,
    ]
    first = asked[0]
    assert isinstance(first, StartAcquisition)
    assert first.redirect_uri == "https://fleetmail.example/oauth/callback"
    assert (first.principal.tenant_id, first.principal.address) == ("t1", "admin@t1.example")


async def test_no_administrator_address_no_sign_in_and_nothing_asked() -> None:
    bus = ScriptedRequester()
    with pytest.raises(NoAdministratorAddress):
        await TokenRelay(bus, SETTINGS).start_administrator_sign_in(TenantSettings(tenant_id="t1"), None)
    assert bus.asked == []


async def test_a_users_sign_in_is_checked_then_refusals_and_silence_are_the_gateways_errors() -> None:
    bus = ScriptedRequester()
    tokens = TokenRelay(bus, SETTINGS)
    with pytest.raises(InvalidAddress):
        await tokens.start_user_sign_in(TENANT, "user\r\n@t1.example", None)
    assert bus.asked == []
    with pytest.raises(TokenServiceUnavailable, match="token-service did not answer"):
        await tokens.start_user_sign_in(TENANT, "user@t1.example", None)
    bus.answers[START_ACQUISITION_SUBJECT] = started(error="the user is not in the directory")
    with pytest.raises(AcquisitionRefused) as refused:
        await tokens.start_user_sign_in(TENANT, "user@t1.example", None)
    assert refused.value.title == "Sign-in refused" and "not in the directory" in refused.value.detail
    bus.answers[START_ACQUISITION_SUBJECT] = '{"unexpected": true}'
    with pytest.raises(TokenServiceUnavailable, match="could not be read"):
        await tokens.start_user_sign_in(TENANT, "user@t1.example", None)


async def test_a_sign_in_outside_the_tenants_mail_domains_is_refused_before_token_service() -> None:
    bus = ScriptedRequester()
    tokens = TokenRelay(bus, SETTINGS)
    listed = TENANT.model_copy(update={"mail_domains": ("t1.example",)})
    with pytest.raises(OutsideTenantDomains, match=r"not in the mail domains of tenant 't1' \(t1.example\)"):
        await tokens.start_user_sign_in(listed, "ceo@victim.example", None)
    moved = listed.model_copy(update={"administrator_address": "ceo@victim.example"})
    with pytest.raises(OutsideTenantDomains):
        await tokens.start_administrator_sign_in(moved, None)
    # An app-only token acts for any mailbox of the directory: no exemption for it.
    app_only = moved.model_copy(update={"identity": IdentitySettings(app_only=True)})
    with pytest.raises(OutsideTenantDomains):
        await tokens.start_administrator_sign_in(app_only, None)
    with pytest.raises(OutsideTenantDomains):
        await tokens.start_administrator_sign_in(app_only, AcquisitionFlow.APP_ONLY)
    assert bus.asked == []


async def test_administrators_see_their_alerts_and_acknowledge_only_open_ones() -> None:
    bus = ScriptedRequester()
    alerts = AlertRelay(bus, SETTINGS)
    with pytest.raises(NotifierUnavailable):
        await alerts.for_administrators("t1", include_resolved=False)
    bus.answers[ALERT_LIST_SUBJECT] = AlertList(alerts=(alert("a1"), alert("a2", for_administrators=False)))
    assert [a.alert_id for a in await alerts.for_administrators("t1", include_resolved=False)] == ["a1"]
    assert [a.alert_id for a in await alerts.for_device(Device("mfp-1", "t1"))] == ["a1", "a2"]
    bus.answers[ALERT_ACKNOWLEDGE_SUBJECT] = AlertList(alerts=())
    with pytest.raises(AlertNotFound):
        await alerts.acknowledge("t1", "a9", by="owner")


async def test_a_logout_names_its_user_and_a_bus_outage_says_report_it_again() -> None:
    publisher = RecordingPublisher()
    store = InMemoryGatewayStore()
    directory = DeviceDirectory(store, b"device-key")
    await directory.register("t1", DeviceRegistration(device_id="mfp-1"))
    events = DeviceEvents(publisher, SETTINGS, directory, clock=lambda: NOW)
    device = Device("mfp-1", "t1")
    with pytest.raises(UserRequired):
        await events.report(device, DeviceReport(kind="user_logged_out"))
    event_id = await events.report(device, DeviceReport(kind="user_logged_out", user="u@t1.example"))
    [(subject, event, msg_id)] = publisher.published
    assert msg_id == event_id and subject.endswith("user_logged_out")
    assert event.model_dump()["tenant_id"] == "t1" and event.model_dump()["device_id"] == "mfp-1"
    publisher.down = True
    with pytest.raises(EventBusUnavailable, match="report the event again"):
        await events.report(device, DeviceReport(kind="auto_reset"))


async def test_an_auto_reset_names_the_devices_session_users_and_ends_their_sessions() -> None:
    publisher = RecordingPublisher()
    directory = DeviceDirectory(InMemoryGatewayStore(), b"device-key")
    for device_id in ("mfp-1", "mfp-2"):
        await directory.register("t1", DeviceRegistration(device_id=device_id))
    events = DeviceEvents(publisher, SETTINGS, directory, clock=lambda: NOW)
    here, there = Device("mfp-1", "t1"), Device("mfp-2", "t1")
    await directory.note_session(here, "Scan.User@t1.example")
    await directory.note_session(here, "fax@t1.example")
    await directory.note_session(there, "other@t1.example")
    await events.report(here, DeviceReport(kind="user_logged_out", user="fax@t1.example"))
    publisher.down = True
    with pytest.raises(EventBusUnavailable):
        await events.report(here, DeviceReport(kind="auto_reset"))
    assert await directory.session_users(here) == ["scan.user@t1.example"]  # kept for the next try
    publisher.down = False
    await events.report(here, DeviceReport(kind="auto_reset"))
    reset = publisher.published[-1][1]
    assert reset.model_dump()["session_users"] == ("scan.user@t1.example",)
    assert await directory.session_users(here) == []
    assert await directory.session_users(there) == ["other@t1.example"]


async def test_a_failure_token_service_answers_is_said_with_its_reason_not_waited_out() -> None:
    bus = ScriptedRequester()
    tokens = TokenRelay(bus, SETTINGS)
    given = CredentialsInput(smtp_username="scanner")
    bus.answers[SET_CREDENTIALS_SUBJECT] = RpcFailure(reason="the store refused the change (WriteError)")
    with pytest.raises(ServiceFailed, match=r"token-service could not carry out .*\(WriteError\)"):
        await tokens.set_credentials("t1", given)
    bus.answers[SET_CREDENTIALS_SUBJECT] = RpcFailure(
        reason="cannot store a tenant's credentials", kind="transient"
    )
    with pytest.raises(TokenServiceUnavailable, match="could not do it just now: cannot store"):
        await tokens.set_credentials("t1", given)


def test_a_credentials_field_is_given_or_cleared_not_both() -> None:
    with pytest.raises(ValueError, match="smtp_password is both given and listed in clear"):
        CredentialsInput(smtp_password="secret", clear=("webhook_secret", "smtp_password"))
    assert CredentialsInput(smtp_username="scanner", clear=("smtp_password",)).clear == ("smtp_password",)
