import pytest
from fleetmail_runtime import smtp_replies
from fleetmail_runtime.smtp_replies import ReplyClass, classify


def test_known_replies_are_classified_with_their_remedy() -> None:
    klass, known = classify(535, smtp_replies.SMTP_AUTH_DISABLED.text)
    assert klass is ReplyClass.PERMANENT and known is smtp_replies.SMTP_AUTH_DISABLED
    assert known.remedy is not None and "Authenticated SMTP" in known.remedy
    klass, known = classify(550, smtp_replies.BASIC_AUTH_REFUSED.text)
    assert klass is ReplyClass.PERMANENT and known is smtp_replies.BASIC_AUTH_REFUSED


def test_token_rejections_and_code_families() -> None:
    assert classify(535, "5.7.3 Authentication unsuccessful [X]")[0] is ReplyClass.TOKEN_REJECTED
    assert classify(501, smtp_replies.HVE_TOKEN_EXPIRING.text)[0] is ReplyClass.TOKEN_REJECTED
    assert classify(451, "4.3.2 try later")[0] is ReplyClass.TRANSIENT
    assert classify(421, "4.7.0 closing")[0] is ReplyClass.TRANSIENT
    assert classify(554, "5.6.0 rejected")[0] is ReplyClass.PERMANENT


def test_gmail_challenge_is_parsed_and_a_bad_token_is_a_token_rejection() -> None:
    import base64

    encoded = base64.b64encode(smtp_replies.GMAIL_XOAUTH2_CHALLENGE.encode()).decode()
    challenge = smtp_replies.parse_xoauth2_challenge(encoded)
    assert challenge is not None and challenge.token_rejected
    assert challenge.scope == "https://mail.google.com/" and challenge.schemes == "Bearer"
    forbidden = base64.b64encode(b'{"status":"403","schemes":"Bearer","scope":"x"}').decode()
    assert smtp_replies.parse_xoauth2_challenge(forbidden).token_rejected is False  # type: ignore[union-attr]
    assert smtp_replies.parse_xoauth2_challenge("not base64 at all!") is None
    assert smtp_replies.parse_xoauth2_challenge(base64.b64encode(b"[1]").decode()) is None


PERMANENT_REFUSALS = [
    (
        535,
        "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
        "Visit https://aka.ms/smtp_auth_disabled for more information.",
        "smtp_auth_disabled",
        "smtp_auth_disabled",
        "Authenticated SMTP",
    ),
    (
        535,
        "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. "
        "Visit https://aka.ms/smtp_auth_disabled for more information.",
        "smtp_auth_disabled_mailbox",
        "smtp_auth_disabled",
        "Authenticated SMTP",
    ),
    (
        535,
        "5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults "
        "policy. Contact your administrator.",
        "security_defaults_locked",
        "configuration_error",
        "Manage security defaults",
    ),
    (
        535,
        "5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated "
        "successfully. Contact your administrator.",
        "sign_in_criteria_not_met",
        "configuration_error",
        "Conditional Access",
    ),
    (
        535,
        "5.7.139 Authentication unsuccessful, account locked.",
        "smtp_auth_refused",
        "smtp_auth_disabled",
        "policy",
    ),
    (
        554,
        "5.2.252 SendAsDenied; mfp@contoso.example not allowed to send as ceo@contoso.example; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
        "process message due to a permanent exception with message Cannot submit message.",
        "send_as_denied_at_submission",
        "send_as_denied",
        "Send as",
    ),
    (
        550,
        "5.7.60 SMTP; Client does not have permissions to send as this sender",
        "send_as_denied",
        "send_as_denied",
        "Add-RecipientPermission",
    ),
    (
        534,
        "5.7.9 Application-specific password required. For more information, go to\n"
        "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor d2sm1 - gsmtp",
        "gmail_app_password_required",
        "authentication_failed",
        "app password",
    ),
]
LIMIT_REFUSALS = [
    (
        432,
        "4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more "
        "information. [Hostname=AM0PR01MB1234]",
        "concurrency_limit",
        "concurrency_limit",
        "3 messages",
        ReplyClass.TRANSIENT,
    ),
    (
        554,
        "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message "
        "due to a permanent exception with message Cannot submit message. 0.35250:0A000000",
        "submission_quota_exceeded",
        "sending_quota_exceeded",
        "second sending mailbox",
        ReplyClass.QUOTA,
    ),
    (
        554,
        "5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded",
        "mailbox_full",
        "mailbox_full",
        "Sent Items",
        ReplyClass.PERMANENT,
    ),
    (
        550,
        "5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to\n"
        "5.4.5  https://support.google.com/a/answer/166852 d2sm1 - gsmtp",
        "gmail_daily_limit",
        "sending_quota_exceeded",
        "High Volume Email",
        ReplyClass.QUOTA,
    ),
    (
        552,
        "5.3.4 Message size exceeds fixed maximum message size",
        "message_size_exceeded",
        "message_too_large",
        "lower resolution",
        ReplyClass.PERMANENT,
    ),
    (
        452,
        "4.5.3 Too many recipients",
        "too_many_recipients",
        "smtp_rejected",
        "another message",
        ReplyClass.TRANSIENT,
    ),
    (
        421,
        "4.7.0 Try again later, closing connection. d2sm1 - gsmtp",
        "gmail_try_later",
        "smtp_rejected",
        "Google Admin console",
        ReplyClass.TRANSIENT,
    ),
    (
        500,
        "5.3.3 Line too long: at most 1000 characters, CRLF included (RFC 5322 2.1.1)",
        "line_too_long",
        "smtp_rejected",
        "attachment",
        ReplyClass.PERMANENT,
    ),
]


@pytest.mark.parametrize(
    ("code", "message", "name", "reason", "remedy_names", "reply_class"),
    [*((*case, ReplyClass.PERMANENT) for case in PERMANENT_REFUSALS), *LIMIT_REFUSALS],
)
def test_every_provider_refusal_has_its_class_and_remedy(
    code: int, message: str, name: str, reason: str, remedy_names: str, reply_class: ReplyClass
) -> None:
    """Exchange's 5.7.139 comes in variants that need different fixes, each is told apart; the
    providers' limit replies each have their class (a wait, a quota, a refusal) and remedy."""
    klass, known = classify(code, message)
    assert known is not None and known.name == name
    assert klass is reply_class and known.reason_code == reason
    assert known.remedy is not None and remedy_names in known.remedy


def test_the_quota_remedy_names_only_what_can_be_done_now() -> None:
    """No transport fleetmail does not have; a higher quota only where the provider raised it."""
    remedy = smtp_replies.QUOTA_REMEDY
    assert "Graph" not in remedy and "Gmail API" not in remedy
    assert "second sending mailbox" in remedy and "High Volume Email" in remedy
    assert "only if the provider raised" in remedy
