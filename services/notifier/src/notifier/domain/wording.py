"""Every alert's words: its title, what happened (detail) and what to do (remedy).

One function per kind of alert, so a reader finds each text in one place and a test can
check it without an event.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetmail_contracts.alerts import AlertCause, AlertSeverity

from .actions import (
    Raise,
    administrator_key,
    administrator_prompt_key,
    configuration_key,
    expiring_key,
    failure_rate_key,
    quota_key,
    smtp_key,
    user_key,
)

SIGN_IN_AT_THE_DEVICE = "Sign in at the device's OAuth screen."


def acquire_remedy(tenant_id: str) -> str:
    return (
        f"Acquire the administrator's refresh token again: `fleetmail tokens acquire {tenant_id}` or "
        f"POST /v1/admin/tenants/{tenant_id}/tokens/administrator/acquire (the device's [OAuth 2.0] "
        "screen → Refresh Tokens → [Acquire])."
    )


SETTINGS_CHANGED = frozenset(
    {"administrator_address_changed", "provider_changed", "identity_settings_changed", "outside_mail_domains"}
)
"""Token events' errors that are no refusal of the provider's: the tenant's settings changed
under the grant, and the event's detail says how."""


def administrator_must_reauthorize(
    tenant_id: str, address: str, error: str, error_codes: Sequence[int], detail: str = ""
) -> Raise:
    body = (
        f"{detail[:1].upper()}{detail[1:]}. No administrator function can send until it is acquired again."
        if error in SETTINGS_CHANGED and detail
        else f"The provider refused the grant ({error} {list(error_codes)}): no administrator function can "
        "send until it is acquired again."
    )
    return Raise(
        administrator_key(tenant_id),
        tenant_id,
        AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED,
        AlertSeverity.CRITICAL,
        f"The administrator's refresh token for {address} needs re-authorization",
        body,
        acquire_remedy(tenant_id),
        address,
    )


def jobs_fail_on_the_administrator_grant(tenant_id: str, detail: str) -> Raise:
    """Jobs failing on a dead grant: the same alert (same key) as the token event's."""
    return Raise(
        administrator_key(tenant_id),
        tenant_id,
        AlertCause.ADMINISTRATOR_REAUTHORIZATION_REQUIRED,
        AlertSeverity.CRITICAL,
        "The administrator's refresh token needs re-authorization",
        detail,
        acquire_remedy(tenant_id),
    )


ADMINISTRATOR_NOT_SIGNED_IN = "OAuth 2.0 is on; the administrator has not signed in — Acquire"


def administrator_not_signed_in(tenant_id: str, address: str) -> Raise:
    """OAuth 2.0 on and no administrator token ever acquired: the device's own prompt, on every
    device's feed (a key of its own; [Acquire] resolves it and the dead grant's alert)."""
    return Raise(
        administrator_prompt_key(tenant_id),
        tenant_id,
        AlertCause.ADMINISTRATOR_NOT_SIGNED_IN,
        AlertSeverity.CRITICAL,
        ADMINISTRATOR_NOT_SIGNED_IN,
        f"No refresh token has been acquired for the administrator address {address}. "
        "Administrator functions and jobs sent as the administrator address wait, and go out by "
        "themselves once it is acquired; those still waiting at the limit are dead-lettered.",
        (
            f"Acquire the administrator's refresh token: `fleetmail tokens acquire {tenant_id}` or "
            f"POST /v1/admin/tenants/{tenant_id}/tokens/administrator/acquire (the device's "
            "[OAuth 2.0] screen → Refresh Tokens → [Acquire])."
        ),
        address,
    )


INTERACTION_REQUIRED = "interaction_required"
"""The token event's `error` when the directory wants the user at a screen (MFA, a claims
challenge): the grant is not revoked, and the alert says what the sign-in must complete."""


def user_must_sign_in_again(tenant_id: str, address: str, error: str = "", detail: str = "") -> Raise:
    if error == INTERACTION_REQUIRED:
        what = (
            "The directory asks this user for an interactive step (multi-factor authentication, "
            f"enrolment or a Conditional Access claims challenge) that a refresh cannot give: {detail}"
        )
        remedy = f"{SIGN_IN_AT_THE_DEVICE} The user completes the step the sign-in page asks for."
    else:
        what = (
            "The user's refresh token is no longer accepted; the user signs in at the device's OAuth screen."
        )
        remedy = SIGN_IN_AT_THE_DEVICE
    return Raise(
        user_key(tenant_id, address),
        tenant_id,
        AlertCause.USER_REAUTHORIZATION_REQUIRED,
        AlertSeverity.WARNING,
        f"{address} must sign in again",
        what,
        remedy,
        address,
        for_administrators=False,
    )


def user_must_sign_in_to_send(tenant_id: str, user: str, device_id: str | None) -> Raise:
    """A job parked for a user's sign-in: shown on the feed of the device it came from."""
    return Raise(
        user_key(tenant_id, user),
        tenant_id,
        AlertCause.USER_REAUTHORIZATION_REQUIRED,
        AlertSeverity.WARNING,
        f"{user} must sign in to send",
        "A job of this user waits for the user's OAuth sign-in and resumes by itself after it.",
        SIGN_IN_AT_THE_DEVICE,
        user,
        device_id=device_id,
        for_administrators=False,
    )


def grant_expiring(tenant_id: str, kind: str, address: str, death: str, *, administrator: bool) -> Raise:
    """`death`: the predicted end of the grant, as the event gave it (its date is shown)."""
    return Raise(
        expiring_key(tenant_id, kind, address),
        tenant_id,
        AlertCause.GRANT_EXPIRING,
        AlertSeverity.WARNING,
        f"The refresh token for {address} expires on {death[:10]}",
        "The provider will end this grant and keep-alive cannot prevent it (a Google app in "
        "testing mode); acquire it again before then.",
        acquire_remedy(tenant_id) if administrator else "Sign in again at the device's OAuth screen.",
        address,
        for_administrators=administrator,
    )


def smtp_refuses(
    tenant_id: str, cause: AlertCause, title: str, detail: str, smtp_reply: str | None, remedy: str | None
) -> Raise:
    return Raise(
        smtp_key(tenant_id, cause),
        tenant_id,
        cause,
        AlertSeverity.CRITICAL,
        title,
        f"{detail} ({smtp_reply or 'no reply'})",
        remedy,
    )


def configuration_error(tenant_id: str, what_is_wrong: str, remedy: str | None) -> Raise:
    """A setting is wrong or missing (no app registration, an unknown tenant, a token the mail
    server refuses for its audience or missing admin consent, a directory policy): no sign-in
    helps, so this is not the re-authorization alert; an administrator or operator fixes
    the setting the detail names."""
    wrong = what_is_wrong.strip().rstrip(".") or "a setting fleetmail needs is missing or wrong"
    return Raise(
        configuration_key(tenant_id),
        tenant_id,
        AlertCause.CONFIGURATION_ERROR,
        AlertSeverity.CRITICAL,
        "A setting is wrong or missing: this tenant cannot send until it is fixed",
        f"{wrong}. Signing in again does not help; jobs fail until the setting is fixed.",
        remedy
        or (
            "Fix the setting named above: the tenant's identity settings (PUT "
            f"/v1/admin/tenants/{tenant_id}, `identity`), its app credentials (PUT "
            f"/v1/admin/tenants/{tenant_id}/credentials), or the token service's defaults "
            "(FLEETMAIL_TOKEN_* settings). The alert resolves with the next message sent."
        ),
    )


def failure_rate_too_high(tenant_id: str, rate: float, deliveries: int) -> Raise:
    return Raise(
        failure_rate_key(tenant_id),
        tenant_id,
        AlertCause.DELIVERY_FAILURE_RATE,
        AlertSeverity.WARNING,
        f"{rate:.0%} of the tenant's last {deliveries} deliveries failed",
        "Failures without another alert's cause: see the dead letters for the replies.",
        f"`fleetmail dead-letters list {tenant_id}` shows each failure and its reason.",
    )


def provider_not_answering(
    key: str, tenant_id: str, provider: str | None, address: str | None, error: str | None, lasted_s: float
) -> Raise:
    lasted = f"{lasted_s / 60:.0f} minutes" if lasted_s >= 120 else f"{lasted_s:.0f} s"
    return Raise(
        key,
        tenant_id,
        AlertCause.PROVIDER_UNREACHABLE,
        AlertSeverity.WARNING,
        f"{provider or 'the identity provider'} has not answered for {lasted}",
        f"Refreshing the token of {address} keeps failing: {error}. "
        "Jobs wait and are retried; nothing is lost yet.",
        "Check the tenant's outbound proxy setting and the provider's status page; no sign-in "
        "is needed unless the provider refuses the token.",
        address,
    )


def sending_quota_used_up(
    tenant_id: str, sender: str, goes_at: str, smtp_reply: str | None, remedy: str | None
) -> Raise:
    """One alert per mailbox, however many of its jobs wait: they go out by themselves."""
    return Raise(
        quota_key(tenant_id, sender),
        tenant_id,
        AlertCause.SENDING_QUOTA_EXCEEDED,
        AlertSeverity.WARNING,
        f"{sender} has used up its daily sending quota",
        f"Its jobs wait and are sent when the provider's window allows (next try {goes_at}); "
        f"none is lost. ({smtp_reply or 'no reply'})",
        remedy,
        principal_address=sender,
    )
