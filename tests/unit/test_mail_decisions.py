"""The retry / dead-letter / park decision, every branch, as a pure function."""

from __future__ import annotations

import pytest
from fleetmail_contracts.mail_events import FailureReason
from mail_service.domain.decisions import (
    Ack,
    AckRedelivery,
    AlreadyDelivered,
    DeadLetter,
    Delivered,
    Park,
    Retry,
    RetryPolicy,
    decide,
    parking_expired,
    retry_delay,
)
from mail_service.errors import (
    AttachmentsUnavailable,
    AwaitingAuthorization,
    ConfigurationError,
    InvalidJob,
    ReauthorizationNeeded,
    SenderNotAllowed,
    SmtpPermanent,
    SmtpTransient,
    TokenRejected,
    TokenUnavailable,
)

POLICY = RetryPolicy(max_deliver=8, base_s=5, max_s=300)


def never() -> float:
    raise AssertionError("no backoff delay should have been computed")


def test_a_delivered_job_is_acknowledged_with_what_was_delivered() -> None:
    delivered = Delivered("admin@acme.example", "<j@fleetmail>", "250 OK", ("x@fabrikam.example",))
    assert decide(delivered, attempt=1, policy=POLICY, jitter=never) == Ack(delivered)


def test_a_redelivery_the_ledger_holds_is_acknowledged_and_nothing_more() -> None:
    assert decide(AlreadyDelivered(), attempt=3, policy=POLICY, jitter=never) == AckRedelivery()


def test_a_job_awaiting_its_users_sign_in_is_parked_for_that_user() -> None:
    outcome = AwaitingAuthorization("walk-up@acme.example")
    assert decide(outcome, attempt=1, policy=POLICY, jitter=never) == Park("walk-up@acme.example")


@pytest.mark.parametrize(
    "error",
    [
        SmtpTransient("the SMTP server deferred the message: 451 4.3.2", "451 4.3.2"),
        TokenUnavailable("token-service did not answer: TimeoutError"),
        AttachmentsUnavailable("the object store cannot be read"),
    ],
)
def test_a_transient_failure_before_max_deliver_is_retried_after_the_backoff(error: Exception) -> None:
    decision = decide(error, attempt=3, policy=POLICY, jitter=lambda: 0.5)
    # attempt 3: 5 s doubled twice = 20 s, with jitter 0.5 three quarters of it
    assert decision == Retry(delay_s=15.0, reason=str(error))
    assert decision.delay_s == retry_delay(3, 5, 300, 0.5)


def test_the_backoff_grows_with_each_attempt_and_stops_at_its_maximum() -> None:
    delays = [
        decide(SmtpTransient("451"), attempt=n, policy=POLICY, jitter=lambda: 0.0).delay_s
        for n in range(1, 8)
    ]
    assert delays == [2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 150.0]
    capped = decide(SmtpTransient("451"), attempt=7, policy=RetryPolicy(99, 5, 100), jitter=lambda: 0.999)
    assert isinstance(capped, Retry) and capped.delay_s <= 100


def test_a_retry_after_from_the_provider_is_honoured_instead_of_the_backoff() -> None:
    error = TokenUnavailable("the identity provider is throttling", retry_after_s=42.0)
    assert decide(error, attempt=2, policy=POLICY, jitter=never) == Retry(42.0, str(error))


def test_a_transient_failure_at_max_deliver_is_dead_lettered_as_retries_exhausted() -> None:
    error = SmtpTransient("the SMTP server deferred the message: 451 4.3.2", "451 4.3.2")
    decision = decide(error, attempt=8, policy=POLICY, jitter=never)
    assert decision == DeadLetter(
        FailureReason.RETRIES_EXHAUSTED,
        f"gave up after 8 attempts: {error}",
        remedy=None,
        smtp_reply="451 4.3.2",
    )


def test_one_attempt_before_max_deliver_is_still_retried() -> None:
    assert isinstance(decide(SmtpTransient("451"), attempt=7, policy=POLICY, jitter=lambda: 0.1), Retry)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            SmtpPermanent("refused", FailureReason.SEND_AS_DENIED, "grant Send As", "550 5.7.60"),
            "send_as_denied",
        ),
        (SenderNotAllowed("no administrator address"), "sender_not_allowed"),
        (ReauthorizationNeeded("the grant is dead"), "reauthorization_required"),
        (ConfigurationError("no app registration for google"), "configuration_error"),
        (InvalidJob("the job has no recipients"), "invalid_job"),
        (TokenRejected("535 5.7.3 Authentication unsuccessful"), "authentication_failed"),
    ],
)
def test_a_permanent_failure_is_dead_lettered_with_its_reason_remedy_and_reply(
    error: Exception, reason: str
) -> None:
    decision = decide(error, attempt=1, policy=POLICY, jitter=never)
    assert decision == DeadLetter(
        FailureReason(reason),
        str(error),
        getattr(error, "remedy", None),
        getattr(error, "smtp_reply", None),
    )


def test_an_invalid_job_is_dead_lettered_on_its_first_attempt() -> None:
    decision = decide(InvalidJob("unreadable job: 3 errors"), attempt=1, policy=POLICY, jitter=never)
    assert decision == DeadLetter(FailureReason.INVALID_JOB, "unreadable job: 3 errors")


def test_a_configuration_error_says_a_setting_must_be_fixed_not_sign_in_again() -> None:
    decision = decide(ConfigurationError("no app registration"), attempt=1, policy=POLICY, jitter=never)
    assert isinstance(decision, DeadLetter) and decision.remedy is not None
    assert "setting must be fixed" in decision.remedy and "Acquire" not in decision.remedy


def test_a_parked_job_past_its_deadline_fails_with_the_sign_in_remedy() -> None:
    assert parking_expired("walk-up@acme.example", 900) == DeadLetter(
        FailureReason.AUTHORIZATION_TIMEOUT,
        "walk-up@acme.example did not sign in within 15 minutes; the job was not sent",
        "Sign in at the device's OAuth screen, then send the job again.",
    )
