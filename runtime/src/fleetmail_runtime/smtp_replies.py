"""SMTP replies that fleetmail recognises: one table shared by mail-service and the SMTP emulator.

Each entry is the reply a real provider sends (`docs/providers.md` has the sources), the class fleetmail gives it
and, where there is one, what an administrator does about it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import StrEnum


class ReplyClass(StrEnum):
    TOKEN_REJECTED = "token_rejected"
    """Refresh the token once, then retry."""
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    QUOTA = "quota"
    """The mailbox's sending quota is used up: wait until its window allows, then send."""


@dataclass(frozen=True)
class KnownReply:
    name: str
    code: int
    text: str
    reply_class: ReplyClass
    reason_code: str
    remedy: str | None = None
    marker: str | None = None
    """What tells this reply from others with the same enhanced code (Exchange's 5.7.139
    comes in several variants); None: the enhanced code alone."""

    def matches(self, code: int, message: str) -> bool:
        if code != self.code:
            return False
        if self.marker is not None:
            return self.marker in message
        # A whole word: 5.2.2 (mailbox full) is not 5.2.252 (Send As denied).
        return self.text.split(" ", 1)[0] in message.split()


ENABLE_SMTP_AUTH = (
    "Enable Authenticated SMTP for this mailbox: Microsoft 365 admin center → Active users → the "
    "user → Mail → Manage email apps → tick 'Authenticated SMTP' (or Set-CASMailbox <mailbox> "
    "-SmtpClientAuthenticationDisabled $false)."
)
SMTP_AUTH_DISABLED = KnownReply(
    name="smtp_auth_disabled",
    code=535,
    text=(
        "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="smtp_auth_disabled",
    remedy=(
        f"{ENABLE_SMTP_AUTH} SMTP AUTH is off for the whole organisation (the default for tenants "
        "created since 2020): enabling it for the mailbox is enough, or tenant-wide "
        "Set-TransportConfig -SmtpClientAuthenticationDisabled $false."
    ),
    marker="disabled for the Tenant",
)
SMTP_AUTH_DISABLED_MAILBOX = KnownReply(
    name="smtp_auth_disabled_mailbox",
    code=535,
    text=(
        "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information."
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="smtp_auth_disabled",
    remedy=ENABLE_SMTP_AUTH,
    marker="disabled for the Mailbox",
)
SECURITY_DEFAULTS_LOCKED = KnownReply(
    name="security_defaults_locked",
    code=535,
    text=(
        "5.7.139 Authentication unsuccessful, user is locked by your organization's security "
        "defaults policy. Contact your administrator."
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="configuration_error",
    remedy=(
        "The directory's security defaults block password (basic) sign-ins to SMTP: switch the "
        "tenant to OAuth 2.0, or an administrator turns security defaults off (Entra admin center "
        "→ Identity → Overview → Properties → Manage security defaults) and protects sign-ins "
        "with Conditional Access policies instead."
    ),
    marker="security defaults",
)
SIGN_IN_CRITERIA_NOT_MET = KnownReply(
    name="sign_in_criteria_not_met",
    code=535,
    text=(
        "5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
        "authenticated successfully. Contact your administrator."
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="configuration_error",
    remedy=(
        "A directory policy refused the sign-in (a Conditional Access policy, multi-factor "
        "authentication required for the account, or SMTP AUTH off for the mailbox): an "
        "administrator finds the refusal in Entra's sign-in logs and excludes this account or "
        f"app from the policy. {ENABLE_SMTP_AUTH}"
    ),
    marker="did not meet the criteria",
)
SMTP_AUTH_REFUSED = KnownReply(
    name="smtp_auth_refused",
    code=535,
    text="5.7.139 Authentication unsuccessful",
    reply_class=ReplyClass.PERMANENT,
    reason_code="smtp_auth_disabled",
    remedy=(
        f"Exchange refused SMTP AUTH for this mailbox by policy. {ENABLE_SMTP_AUTH} Entra's "
        "sign-in logs say which policy refused it."
    ),
)
BASIC_AUTH_REFUSED = KnownReply(
    name="basic_auth_refused",
    code=550,
    text="5.7.30 Basic authentication is not supported for Client Submission",
    reply_class=ReplyClass.PERMANENT,
    reason_code="basic_auth_refused",
    remedy="Basic authentication is no longer accepted: switch the tenant to OAuth 2.0.",
)
SEND_AS_REMEDY = (
    "Send From the authenticated mailbox, or grant it Send As for the address: Exchange admin "
    "center → Recipients → the address's mailbox or group → Delegation → Send as → add the "
    "sending mailbox (Add-RecipientPermission <address> -AccessRights SendAs -Trustee <mailbox>)."
)
SEND_AS_DENIED = KnownReply(
    name="send_as_denied",
    code=550,
    text="5.7.60 SMTP; Client does not have permissions to send as this sender",
    reply_class=ReplyClass.PERMANENT,
    reason_code="send_as_denied",
    remedy=SEND_AS_REMEDY,
)
SEND_AS_DENIED_AT_SUBMISSION = KnownReply(
    name="send_as_denied_at_submission",
    code=554,
    text=(
        "5.2.252 SendAsDenied; {mailbox} not allowed to send as {sender}; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
        "process message due to a permanent exception with message Cannot submit message."
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="send_as_denied",
    remedy=SEND_AS_REMEDY,
    marker="SendAsDenied",
)
MICROSOFT_AUTH_FAILED = KnownReply(
    name="microsoft_auth_failed",
    code=535,
    text="5.7.3 Authentication unsuccessful",
    reply_class=ReplyClass.TOKEN_REJECTED,
    reason_code="authentication_failed",
)
GMAIL_AUTH_FAILED = KnownReply(
    name="gmail_auth_failed",
    code=535,
    text=(
        "5.7.8 Username and Password not accepted. For more information, go to\n"
        "5.7.8  https://support.google.com/mail/?p=BadCredentials"
    ),
    reply_class=ReplyClass.TOKEN_REJECTED,
    reason_code="authentication_failed",
)
GMAIL_APP_PASSWORD_REQUIRED = KnownReply(
    name="gmail_app_password_required",
    code=534,
    text=(
        "5.7.9 Application-specific password required. For more information, go to\n"
        "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor"
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="authentication_failed",
    remedy=(
        "The Google account uses 2-Step Verification, so its own password is refused over SMTP: "
        "create an app password (Google Account → Security → 2-Step Verification → App "
        "passwords) and store it as the tenant's SMTP password, or switch the tenant to OAuth 2.0."
    ),
)
HVE_TOKEN_EXPIRING = KnownReply(
    name="hve_token_expiring",
    code=501,
    text="5.5.127 Invalid XOAUTH2 auth data - Token will expire soon",
    reply_class=ReplyClass.TOKEN_REJECTED,
    reason_code="authentication_failed",
)

NOT_AUTHENTICATED = KnownReply(
    name="not_authenticated",
    code=530,
    text="5.7.57 Client not authenticated to send mail.",
    reply_class=ReplyClass.PERMANENT,
    reason_code="authentication_failed",
    remedy=(
        "The server accepts mail only after SMTP AUTH: store the tenant's SMTP username and "
        "password, or switch the tenant to OAuth 2.0."
    ),
)
QUOTA_REMEDY = (
    "The mailbox has sent as much as its provider allows in a day (Exchange Online: 10,000 "
    "recipients; Gmail: 2,000 messages on Workspace, 500 on consumer accounts); its jobs wait "
    "and go out when the rolling 24-hour window allows. To send more: spread the fleet's "
    "functions over a second sending mailbox (another tenant or sender address), or "
    "(Microsoft 365) send internal mail through Exchange High Volume Email. Raise the tenant's "
    "sending_limits.daily_quota only if the provider raised this mailbox's limit."
)
CONCURRENCY_LIMIT = KnownReply(
    name="concurrency_limit",
    code=432,
    text="4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information.",
    reply_class=ReplyClass.TRANSIENT,
    reason_code="concurrency_limit",
    remedy="Exchange Online takes 3 messages of one mailbox in submission at once; send fewer at a time.",
)
SUBMISSION_QUOTA_EXCEEDED = KnownReply(
    name="submission_quota_exceeded",
    code=554,
    text=(
        "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process "
        "message due to a permanent exception with message Cannot submit message."
    ),
    reply_class=ReplyClass.QUOTA,
    reason_code="sending_quota_exceeded",
    remedy=QUOTA_REMEDY,
)
MAILBOX_FULL = KnownReply(
    name="mailbox_full",
    code=554,
    text=(
        "5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException; Failed to "
        "process message due to a permanent exception with message Cannot save changes made to "
        "an item to store."
    ),
    reply_class=ReplyClass.PERMANENT,
    reason_code="mailbox_full",
    remedy=(
        "The sending mailbox is full, and every sent message is stored in its Sent Items: "
        "empty Sent Items or give it a retention policy that deletes old sent items "
        "(Set-RetentionPolicy / a Microsoft 365 retention label), or raise the mailbox quota."
    ),
)
GMAIL_DAILY_LIMIT = KnownReply(
    name="gmail_daily_limit",
    code=550,
    text=(
        "5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to\n"
        "5.4.5  https://support.google.com/a/answer/166852 - gsmtp"
    ),
    reply_class=ReplyClass.QUOTA,
    reason_code="sending_quota_exceeded",
    remedy=QUOTA_REMEDY,
)
GMAIL_TRY_LATER = KnownReply(
    name="gmail_try_later",
    code=421,
    text="4.7.0 Try again later, closing connection. - gsmtp",
    reply_class=ReplyClass.TRANSIENT,
    reason_code="smtp_rejected",
    remedy=(
        "Gmail is holding this mailbox back for a while (too many connections or messages at "
        "once, or unusual traffic); the job is tried again by itself. If it keeps happening, "
        "send less at once (the tenant's sending_limits.concurrent_submissions or "
        "messages_per_minute) and look for a sending block in the Google Admin console."
    ),
)
MESSAGE_SIZE_EXCEEDED = KnownReply(
    name="message_size_exceeded",
    code=552,
    text="5.3.4 Message size exceeds fixed maximum message size",
    reply_class=ReplyClass.PERMANENT,
    reason_code="message_too_large",
    remedy="Scan at a lower resolution or split the document.",
)
TOO_MANY_RECIPIENTS = KnownReply(
    name="too_many_recipients",
    code=452,
    text="4.5.3 Too many recipients",
    reply_class=ReplyClass.TRANSIENT,
    reason_code="smtp_rejected",
    remedy="Send the remaining recipients in another message.",
)
LINE_TOO_LONG = KnownReply(
    name="line_too_long",
    code=500,
    text="5.3.3 Line too long: at most 1000 characters, CRLF included (RFC 5322 2.1.1)",
    reply_class=ReplyClass.PERMANENT,
    reason_code="smtp_rejected",
    remedy=(
        "A line of the message is longer than the 1,000 characters SMTP allows (RFC 5322 "
        "2.1.1), most likely a text body or a header the device sent (a long subject or file "
        "name): shorten it, or send the text as an attachment."
    ),
)
KNOWN_REPLIES: tuple[KnownReply, ...] = (
    CONCURRENCY_LIMIT,
    SUBMISSION_QUOTA_EXCEEDED,
    MAILBOX_FULL,
    GMAIL_DAILY_LIMIT,
    GMAIL_TRY_LATER,
    MESSAGE_SIZE_EXCEEDED,
    TOO_MANY_RECIPIENTS,
    LINE_TOO_LONG,
    NOT_AUTHENTICATED,
    SMTP_AUTH_DISABLED,
    SMTP_AUTH_DISABLED_MAILBOX,
    SECURITY_DEFAULTS_LOCKED,
    SIGN_IN_CRITERIA_NOT_MET,
    SMTP_AUTH_REFUSED,
    BASIC_AUTH_REFUSED,
    SEND_AS_DENIED,
    SEND_AS_DENIED_AT_SUBMISSION,
    GMAIL_APP_PASSWORD_REQUIRED,
    HVE_TOKEN_EXPIRING,
    MICROSOFT_AUTH_FAILED,
    GMAIL_AUTH_FAILED,
)

GMAIL_XOAUTH2_CHALLENGE = '{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
"""Decoded body of Gmail's `334` challenge on a bad XOAUTH2 token."""

TOKEN_CHALLENGE_STATUSES = frozenset({"400", "401"})
"""Challenge statuses that mean "this token is not good (any more)": refresh and retry once."""


@dataclass(frozen=True)
class XOAuth2Challenge:
    """What a server says in its `334` answer to a refused XOAUTH2 token (Gmail's JSON)."""

    status: str
    schemes: str
    scope: str

    @property
    def token_rejected(self) -> bool:
        return self.status in TOKEN_CHALLENGE_STATUSES


def parse_xoauth2_challenge(text: str) -> XOAuth2Challenge | None:
    """The base64 JSON after `334`, or None when it is not one (never raises)."""
    try:
        decoded = json.loads(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(decoded, dict):
        return None
    return XOAuth2Challenge(
        str(decoded.get("status", "")), str(decoded.get("schemes", "")), str(decoded.get("scope", ""))
    )


def classify(code: int, message: str) -> tuple[ReplyClass, KnownReply | None]:
    """The class of an SMTP reply: known replies first, then by code family."""
    for known in KNOWN_REPLIES:
        if known.matches(code, message):
            return known.reply_class, known
    if code == 535:
        return ReplyClass.TOKEN_REJECTED, None
    if 400 <= code < 500:
        return ReplyClass.TRANSIENT, None
    return ReplyClass.PERMANENT, None
