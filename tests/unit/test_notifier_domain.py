"""What the notifier's domain decides from an event, and the words it puts on alerts
(notifier.domain: pure, no I/O)."""

import typing
from datetime import UTC, datetime, timedelta

from fleetmail_contracts import mail_events
from fleetmail_contracts.alerts import AlertCause, AlertSeverity
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import GrantStatus, GrantView, Principal, PrincipalKind, Provider
from notifier.domain import (
    MAIL_EVENTS_ACTED_ON,
    Condition,
    ConditionEnded,
    FailureRate,
    Raise,
    Resolve,
    administrator_key,
    administrator_prompt_key,
    administrator_sign_in,
    condition_change,
    configuration_key,
    expiring_key,
    failure_rate_key,
    lasting_alert,
    on_mail_event,
    on_token_event,
    scan_grants,
    started_before,
    unreachable_key,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PRINCIPAL = {"tenant_id": "t1", "kind": "administrator", "address": "admin@t1.example"}
CONFIGURATION_DETAIL = (
    "tenant 't1' has no Microsoft app (client) id: set the tenant's identity.client_id or "
    "FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID"
)


def grant(address: str, kind: PrincipalKind, status: GrantStatus, death: datetime | None) -> GrantView:
    return GrantView(
        principal=Principal(tenant_id="t1", kind=kind, address=address),
        provider=Provider.GOOGLE,
        status=status,
        scopes=("https://mail.google.com/",),
        acquired_at=NOW - timedelta(days=1),
        predicted_death_at=death,
    )


def test_every_action_carries_the_time_of_its_event() -> None:
    failed = {
        "kind": "failed",
        "tenant_id": "t1",
        "reason_code": "reauthorization_required",
        "occurred_at": "2026-11-28T12:00:01.250000+00:00",
    }
    acquired = {"kind": "acquired", "principal": PRINCIPAL, "occurred_at": "2026-11-28T12:00:05Z"}
    [raised] = on_mail_event(failed)
    assert isinstance(raised, Raise)
    assert raised.observed_at == datetime(2026, 11, 28, 12, 0, 1, 250000, tzinfo=UTC)
    resolves = on_token_event(acquired)
    assert resolves and all(isinstance(a, Resolve) for a in resolves)
    assert {a.observed_at for a in resolves} == {datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)}
    rate = FailureRate(threshold=0.5, window=2, min_samples=1)
    [statistic] = rate.observe(failed | {"reason_code": "smtp_rejected"})
    assert statistic.observed_at == raised.observed_at


def test_an_event_without_a_readable_time_means_now() -> None:
    for occurred in ({}, {"occurred_at": "yesterday"}):
        [raised] = on_token_event({"kind": "reauthorization_required", "principal": PRINCIPAL, **occurred})
        assert raised.observed_at is None
    soon = NOW + timedelta(days=1)
    [expiring] = scan_grants(
        [grant("admin@t1.example", PrincipalKind.ADMINISTRATOR, GrantStatus.ACTIVE, soon)],
        NOW,
        timedelta(days=14),
    )
    assert expiring.observed_at is None  # the scan's own finding: now


def test_a_dead_administrator_grant_and_the_jobs_failing_on_it_are_one_alert() -> None:
    dead = {"kind": "reauthorization_required", "principal": PRINCIPAL, "error": "invalid_grant"}
    [from_token] = on_token_event(dead | {"error_codes": [70000]})
    [from_job] = on_mail_event(
        {"kind": "failed", "tenant_id": "t1", "reason_code": "reauthorization_required", "detail": "d"}
    )
    assert isinstance(from_token, Raise) and isinstance(from_job, Raise)
    assert from_token.key == from_job.key == administrator_key("t1")
    assert from_token.cause is AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED
    assert from_token.severity is AlertSeverity.CRITICAL and from_token.for_administrators
    assert "invalid_grant [70000]" in from_token.detail
    assert from_token.remedy is not None and "fleetmail tokens acquire t1" in from_token.remedy
    assert "seed" not in from_token.remedy


def test_the_cause_going_away_resolves_its_alert() -> None:
    refreshed = on_token_event({"kind": "refreshed", "principal": PRINCIPAL})
    assert {a.key for a in refreshed} == {
        administrator_key("t1"),
        unreachable_key("t1", "administrator", "admin@t1.example"),
    }
    acquired = on_token_event({"kind": "acquired", "principal": PRINCIPAL})
    assert expiring_key("t1", "administrator", "admin@t1.example") in {a.key for a in acquired}
    assert all(isinstance(a, Resolve) for a in refreshed + acquired)
    user = {"tenant_id": "t1", "kind": "user", "address": "U@t1.example"}
    [deleted] = on_token_event({"kind": "deleted", "principal": user})
    assert isinstance(deleted, Resolve) and deleted.key == "t1|user:u@t1.example|reauthorization"
    assert on_token_event({"kind": "deleted", "principal": PRINCIPAL}) == []  # still needed


def test_a_user_who_must_sign_in_is_told_at_the_device_not_the_administrators() -> None:
    [parked] = on_mail_event(
        {"kind": "parked", "tenant_id": "t1", "user": "u@t1.example", "device_id": "floor1"}
    )
    assert isinstance(parked, Raise) and not parked.for_administrators
    assert parked.device_id == "floor1" and parked.cause is AlertCause.USER_REAUTHORIZATION_REQUIRED
    [dead] = on_token_event(
        {
            "kind": "reauthorization_required",
            "principal": PRINCIPAL | {"kind": "user", "address": "u@t1.example"},
        }
    )
    assert isinstance(dead, Raise) and dead.key == parked.key and not dead.for_administrators


def test_a_user_asked_for_mfa_is_told_the_step_not_that_the_grant_is_gone() -> None:
    user = PRINCIPAL | {"kind": "user", "address": "u@t1.example"}
    [mfa] = on_token_event(
        {
            "kind": "reauthorization_required",
            "principal": user,
            "error": "interaction_required",
            "error_codes": [50076],
            "detail": "the directory asks for an interactive step (invalid_grant [50076])",
        }
    )
    assert isinstance(mfa, Raise) and mfa.cause is AlertCause.USER_REAUTHORIZATION_REQUIRED
    assert "multi-factor" in mfa.detail and "[50076]" in mfa.detail
    assert "no longer accepted" not in mfa.detail and "completes the step" in (mfa.remedy or "")
    [revoked] = on_token_event(
        {"kind": "reauthorization_required", "principal": user, "error": "invalid_grant"}
    )
    assert isinstance(revoked, Raise) and "no longer accepted" in revoked.detail


def test_smtp_refusals_are_alerts_a_sent_message_resolves() -> None:
    for reason, cause in (
        ("smtp_auth_disabled", AlertCause.SMTP_AUTH_DISABLED),
        ("basic_auth_refused", AlertCause.BASIC_AUTH_REFUSED),
        ("mailbox_full", AlertCause.MAILBOX_FULL),
    ):
        failed = {"kind": "failed", "tenant_id": "t1", "reason_code": reason, "detail": "refused"}
        [raised] = on_mail_event(failed | {"smtp_reply": "535 5.7.139", "remedy": "switch it on"})
        assert isinstance(raised, Raise) and raised.cause is cause
        assert raised.detail == "refused (535 5.7.139)" and raised.remedy == "switch it on"
        sent = on_mail_event({"kind": "sent", "tenant_id": "t1"})
        assert raised.key in {a.key for a in sent if isinstance(a, Resolve)}


def test_a_used_up_quota_is_one_alert_per_mailbox_with_the_remedy() -> None:
    waiting = {
        "kind": "waiting_for_quota",
        "tenant_id": "t1",
        "sender": "Scans@t1.example",
        "next_attempt_at": "2026-11-29T10:00:00+00:00",
        "smtp_reply": "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        "remedy": "use the Graph transport",
    }
    first, second = on_mail_event(waiting), on_mail_event(waiting | {"job_id": "another"})
    [raised] = first
    assert isinstance(raised, Raise) and raised.cause is AlertCause.SENDING_QUOTA_EXCEEDED
    assert [a.key for a in second] == [raised.key]  # the same alert, not a second one
    assert raised.remedy == "use the Graph transport" and "none is lost" in raised.detail
    other = on_mail_event(waiting | {"sender": "fax@t1.example"})
    assert other[0].key != raised.key
    sent = on_mail_event({"kind": "sent", "tenant_id": "t1", "sender": "scans@t1.example"})
    assert raised.key in {a.key for a in sent if isinstance(a, Resolve)}


def test_a_configuration_error_is_a_configuration_alert_not_re_authorization() -> None:
    failed = {
        "kind": "failed",
        "tenant_id": "t1",
        "reason_code": "configuration_error",
        "detail": CONFIGURATION_DETAIL,
    }
    [raised] = on_mail_event(failed)
    assert isinstance(raised, Raise)
    assert raised.key == configuration_key("t1") != administrator_key("t1")
    assert raised.cause is AlertCause.CONFIGURATION_ERROR and raised.for_administrators
    # What is wrong, and which setting to fix; no sign-in is asked for.
    assert CONFIGURATION_DETAIL in raised.detail and "Signing in again does not help" in raised.detail
    assert raised.remedy is not None and "identity" in raised.remedy and "credentials" in raised.remedy
    assert "acquire" not in raised.remedy.lower() and "re-authorization" not in raised.title
    [with_remedy] = on_mail_event(failed | {"remedy": "Set the tenant's client id."})
    assert isinstance(with_remedy, Raise) and with_remedy.remedy == "Set the tenant's client id."
    sent = on_mail_event({"kind": "sent", "tenant_id": "t1"})
    assert configuration_key("t1") in {a.key for a in sent if isinstance(a, Resolve)}


def test_a_token_event_that_carries_a_configuration_error_is_a_configuration_alert() -> None:
    for kind in ("refresh_failed", "reauthorization_required"):
        event = {"kind": kind, "principal": PRINCIPAL, "error": "configuration_error", "detail": "no app id"}
        [raised] = on_token_event(event)
        assert isinstance(raised, Raise) and raised.cause is AlertCause.CONFIGURATION_ERROR
        assert condition_change(event, NOW) is None  # not an outage either


def test_failure_rate_counts_unexplained_failures_with_hysteresis() -> None:
    rate = FailureRate(threshold=0.5, window=10, min_samples=4)

    def event(kind: str, reason: str | None = None) -> dict:
        return {"kind": kind, "tenant_id": "t1", "reason_code": reason}

    # Failures another alert explains are not counted.
    for explained in ("reauthorization_required", "configuration_error", "smtp_auth_disabled"):
        assert all(rate.observe(event("failed", explained)) == [] for _ in range(10))
    assert rate.observe(event("failed", "smtp_rejected")) == []  # too few samples yet
    rate.observe(event("sent"))
    rate.observe(event("failed", "smtp_rejected"))
    [raised] = rate.observe(event("failed", "recipients_rejected"))  # 3 of 4 failed
    assert isinstance(raised, Raise) and raised.cause is AlertCause.DELIVERY_FAILURE_RATE
    assert raised.key == failure_rate_key("t1") and raised.title.startswith("75% of the tenant's last 4")
    assert isinstance(rate.observe(event("sent"))[0], Raise)  # 3 of 5: still at or above the threshold
    assert isinstance(rate.observe(event("sent"))[0], Raise)  # 3 of 6 = 50%
    # Between half the threshold and the threshold: neither raised nor resolved.
    for _ in range(4):  # 3 of 7 … 3 of 10
        assert rate.observe(event("sent")) == []
    [resolved] = rate.observe(event("sent"))  # the oldest failure leaves the window: 2 of 10
    assert isinstance(resolved, Resolve) and resolved.detail == "the failure rate fell to 20%"


def test_the_mail_events_the_notifier_skips_can_change_no_alert() -> None:
    """The notifier skips (and leaves no span for) mail events outside MAIL_EVENTS_ACTED_ON:
    every other kind the contracts define must be one that changes nothing."""
    kinds = {
        typing.get_args(model.model_fields["kind"].annotation)[0]
        for model in vars(mail_events).values()
        if isinstance(model, type)
        and issubclass(model, mail_events.MailEventBase)
        and "kind" in model.model_fields
    }
    assert kinds > MAIL_EVENTS_ACTED_ON, kinds
    rate = FailureRate(threshold=0.1, window=4, min_samples=1)
    for kind in kinds - MAIL_EVENTS_ACTED_ON:
        for reason in (None, *(reason.value for reason in mail_events.FailureReason)):
            event = {"kind": kind, "tenant_id": "t1", "reason_code": reason, "user": "u@t1.example"}
            assert on_mail_event(event) == [] and rate.observe(event) == [], event


def test_the_grant_scan_raises_what_an_expiring_event_would() -> None:
    death = NOW + timedelta(days=3)
    grants = [
        grant("admin@t1.example", PrincipalKind.ADMINISTRATOR, GrantStatus.ACTIVE, death),
        grant("u@t1.example", PrincipalKind.USER, GrantStatus.ACTIVE, NOW + timedelta(days=80)),
        grant("dead@t1.example", PrincipalKind.USER, GrantStatus.REAUTHORIZATION_REQUIRED, NOW),
        grant("forever@t1.example", PrincipalKind.USER, GrantStatus.ACTIVE, None),
    ]
    [action] = scan_grants(grants, NOW, timedelta(days=14))
    [from_event] = on_token_event(
        {"kind": "expiring", "principal": PRINCIPAL, "predicted_death_at": death.isoformat()}
    )
    assert action == from_event
    assert isinstance(action, Raise) and action.key == expiring_key("t1", "administrator", "admin@t1.example")
    assert action.cause is AlertCause.GRANT_EXPIRING and "2026-12-01" in action.title


def test_a_refresh_failure_starts_a_condition_that_an_answer_ends() -> None:
    failed = {
        "kind": "refresh_failed",
        "principal": PRINCIPAL,
        "provider": "microsoft",
        "error": "HTTP 503",
        "occurred_at": "2026-11-28T11:50:00Z",
    }
    key = unreachable_key("t1", "administrator", "admin@t1.example")
    assert condition_change(failed, NOW) == Condition(
        key, NOW - timedelta(minutes=10), "t1", "administrator", "admin@t1.example", "microsoft", "HTTP 503"
    )
    started = condition_change({k: v for k, v in failed.items() if k != "occurred_at"}, NOW)
    assert isinstance(started, Condition) and started.since == NOW
    for kind in ("recovered", "refreshed", "acquired", "deleted"):
        assert condition_change({"kind": kind, "principal": PRINCIPAL}, NOW) == ConditionEnded(key)
    assert condition_change({"kind": "expiring", "principal": PRINCIPAL}, NOW) is None
    assert on_token_event(failed) == []  # no alert until it lasts


def test_a_provider_not_answering_longer_than_the_setting_is_an_alert_that_says_how_long() -> None:
    after = timedelta(minutes=15)
    key = unreachable_key("t1", "administrator", "admin@t1.example")

    def condition(since: datetime) -> Condition:
        return Condition(key, since, "t1", "administrator", "admin@t1.example", "microsoft", "HTTP 503")

    assert started_before(NOW, after) == NOW - after  # the store's query: since <= this
    alert = lasting_alert(condition(NOW - timedelta(minutes=16)), NOW)
    assert alert.key == key and alert.cause is AlertCause.PROVIDER_UNREACHABLE
    assert alert.title == "microsoft has not answered for 16 minutes"
    assert "admin@t1.example keeps failing: HTTP 503" in alert.detail
    assert alert.principal_address == "admin@t1.example"
    short = lasting_alert(condition(NOW - timedelta(seconds=90)), NOW)
    assert short.title == "microsoft has not answered for 90 s"


def test_oauth_on_without_an_administrator_grant_is_the_devices_prompt_on_every_feed() -> None:
    tenant = TenantSettings(tenant_id="t1", oauth_enabled=True, administrator_address="Admin@t1.example")
    [prompt] = administrator_sign_in(tenant, [])
    assert isinstance(prompt, Raise) and prompt.key == administrator_prompt_key("t1") != administrator_key(
        "t1"
    )
    assert prompt.title == "OAuth 2.0 is on; the administrator has not signed in — Acquire"
    assert prompt.cause is AlertCause.ADMINISTRATOR_NOT_SIGNED_IN and prompt.device_id is None
    assert prompt.for_administrators and "fleetmail tokens acquire t1" in (prompt.remedy or "")
    # A user's grant is no administrator's; the administrator's own, active, resolves the prompt.
    user = grant("admin@t1.example", PrincipalKind.USER, GrantStatus.ACTIVE, None)
    assert administrator_sign_in(tenant, [user]) == [prompt]
    admin = grant("admin@t1.example", PrincipalKind.ADMINISTRATOR, GrantStatus.ACTIVE, None)
    resolved = administrator_sign_in(tenant, [admin])
    assert {r.key for r in resolved if isinstance(r, Resolve)} == {administrator_key("t1"), prompt.key}
    # A dead one is the re-authorization alert's business, not this one's.
    dead = grant("admin@t1.example", PrincipalKind.ADMINISTRATOR, GrantStatus.REAUTHORIZATION_REQUIRED, None)
    assert administrator_sign_in(tenant, [dead]) == []
    # A grant of the previous administrator address: token-service marks it and its alert says
    # what changed; the prompt must not cover that up.
    previous = grant("old-admin@t1.example", PrincipalKind.ADMINISTRATOR, GrantStatus.ACTIVE, None)
    assert administrator_sign_in(tenant, [previous]) == []
    # OAuth 2.0 off: nothing to sign in for; app-only: no one signs in.
    off = tenant.model_copy(update={"oauth_enabled": False})
    assert [type(a) for a in administrator_sign_in(off, [])] == [Resolve, Resolve]
    app_only = tenant.model_copy(update={"identity": tenant.identity.model_copy(update={"app_only": True})})
    assert administrator_sign_in(app_only, []) == []


def test_a_job_parked_for_the_administrator_raises_the_same_prompt_not_a_users() -> None:
    event = {
        "kind": "parked",
        "tenant_id": "t1",
        "device_id": "mfp-1",
        "user": "admin@t1.example",
        "administrator": True,
    }
    [prompt] = on_mail_event(event)
    assert (
        isinstance(prompt, Raise)
        and prompt.key == administrator_prompt_key("t1")
        and prompt.device_id is None
    )
    assert prompt.cause is AlertCause.ADMINISTRATOR_NOT_SIGNED_IN
