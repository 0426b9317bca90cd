"""What a token or mail event means for alerts: raise one, resolve one, or nothing. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from fleetmail_contracts.alerts import AlertCause
from fleetmail_contracts.mail_events import FailureReason
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import GrantStatus, GrantView, PrincipalKind

from . import wording
from .actions import (
    Action,
    Event,
    Resolve,
    administrator_key,
    administrator_prompt_key,
    configuration_key,
    expiring_key,
    observed,
    quota_key,
    smtp_key,
    unreachable_key,
    user_key,
)

CONFIGURATION_ERROR = FailureReason.CONFIGURATION_ERROR.value
"""The code of a configuration error, on a failed job (`reason_code`) or a token event (`error`)."""


def on_token_event(event: Event) -> list[Action]:
    return observed(_token_actions(event), event)


def _token_actions(event: Event) -> list[Action]:
    kind = event.get("kind")
    principal = event.get("principal") or {}
    tenant_id, address = principal.get("tenant_id", ""), principal.get("address", "")
    principal_kind = principal.get("kind", "")
    administrator = principal_kind == "administrator"
    grant_key = administrator_key(tenant_id) if administrator else user_key(tenant_id, address)
    if kind in ("reauthorization_required", "refresh_failed") and event.get("error") == CONFIGURATION_ERROR:
        return [wording.configuration_error(tenant_id, str(event.get("detail") or ""), None)]
    if kind == "reauthorization_required":
        if administrator:
            return [
                wording.administrator_must_reauthorize(
                    tenant_id,
                    address,
                    str(event.get("error", "invalid_grant")),
                    list(event.get("error_codes") or []),
                    str(event.get("detail") or ""),
                ),
            ]
        return [
            wording.user_must_sign_in_again(
                tenant_id, address, str(event.get("error", "")), str(event.get("detail", ""))
            )
        ]
    if kind == "expiring":
        return [
            wording.grant_expiring(
                tenant_id,
                principal_kind,
                address,
                str(event.get("predicted_death_at", "")),
                administrator=administrator,
            )
        ]
    if kind in ("acquired", "refreshed", "recovered"):
        actions: list[Action] = [
            Resolve(grant_key, f"the refresh token for {address} works again ({kind})"),
            Resolve(unreachable_key(tenant_id, principal_kind, address), "the provider answers again"),
        ]
        if kind == "acquired":
            actions.append(Resolve(expiring_key(tenant_id, principal_kind, address), "acquired again"))
            if administrator:
                actions.append(Resolve(administrator_prompt_key(tenant_id), ADMINISTRATOR_SIGNED_IN))
        return actions
    if kind == "deleted" and not administrator:
        return [Resolve(grant_key, f"the token of {address} was deleted")]
    return []


MAIL_CAUSES = {
    FailureReason.SMTP_AUTH_DISABLED.value: (
        AlertCause.SMTP_AUTH_DISABLED,
        "SMTP AUTH is switched off for the sending mailbox",
    ),
    FailureReason.BASIC_AUTH_REFUSED.value: (
        AlertCause.BASIC_AUTH_REFUSED,
        "The SMTP server no longer accepts basic authentication",
    ),
    FailureReason.MAILBOX_FULL.value: (
        AlertCause.MAILBOX_FULL,
        "The sending mailbox is full (its Sent Items keep every message sent)",
    ),
}


MAIL_EVENTS_ACTED_ON = frozenset({"sent", "failed", "parked", "waiting_for_quota"})
"""The mail events that can change an alert (`on_mail_event`, `FailureRate.observe`); the
others ("accepted", "deferred", "paced") are acknowledged with their batch and leave no span."""


def on_mail_event(event: Event) -> list[Action]:
    return observed(_mail_actions(event), event)


def _mail_actions(event: Event) -> list[Action]:
    kind, tenant_id = event.get("kind"), event.get("tenant_id", "")
    if kind == "failed":
        reason = event.get("reason_code")
        if reason in MAIL_CAUSES:
            cause, title = MAIL_CAUSES[reason]
            return [
                wording.smtp_refuses(
                    tenant_id,
                    cause,
                    title,
                    str(event.get("detail", "")),
                    event.get("smtp_reply"),
                    event.get("remedy"),
                )
            ]
        if reason == FailureReason.REAUTHORIZATION_REQUIRED.value:
            return [wording.jobs_fail_on_the_administrator_grant(tenant_id, str(event.get("detail", "")))]
        if reason == CONFIGURATION_ERROR:
            return [wording.configuration_error(tenant_id, str(event.get("detail", "")), event.get("remedy"))]
        return []
    if kind == "waiting_for_quota":
        return [
            wording.sending_quota_used_up(
                tenant_id,
                str(event.get("sender", "")),
                str(event.get("next_attempt_at", "")),
                event.get("smtp_reply"),
                event.get("remedy"),
            )
        ]
    if kind == "parked":
        if event.get("administrator"):
            return [wording.administrator_not_signed_in(tenant_id, str(event.get("user", "")))]
        return [
            wording.user_must_sign_in_to_send(tenant_id, str(event.get("user", "")), event.get("device_id"))
        ]
    if kind == "sent":
        return [
            *(
                Resolve(smtp_key(tenant_id, cause), "a message was sent again")
                for cause in (
                    AlertCause.SMTP_AUTH_DISABLED,
                    AlertCause.BASIC_AUTH_REFUSED,
                    AlertCause.MAILBOX_FULL,
                )
            ),
            Resolve(configuration_key(tenant_id), "a message was sent again"),
            Resolve(quota_key(tenant_id, str(event.get("sender", ""))), "the mailbox sends again"),
        ]
    return []


def scan_grants(grants: Sequence[GrantView], now: datetime, horizon: timedelta) -> list[Action]:
    """The periodic scan, in case an event was missed: every active grant whose
    predicted death falls within the horizon raises the same alert an `expiring` event would
    (its time is the scan's: now)."""
    actions: list[Action] = []
    for grant in grants:
        death = grant.predicted_death_at
        if grant.status is not GrantStatus.ACTIVE or death is None or death - now > horizon:
            continue
        principal = grant.principal
        actions.append(
            wording.grant_expiring(
                principal.tenant_id,
                principal.kind.value,
                principal.address,
                death.isoformat(),
                administrator=principal.kind is PrincipalKind.ADMINISTRATOR,
            )
        )
    return actions


OAUTH_OFF = "OAuth 2.0 is off: no administrator token is needed"
ADMINISTRATOR_SIGNED_IN = "the administrator's refresh token is acquired"


def administrator_sign_in(tenant: TenantSettings, grants: Sequence[GrantView]) -> list[Action]:
    """Whether the tenant's administrator has signed in, from its grants: with OAuth 2.0 on and
    no administrator grant for its address, the device's prompt (not for a tenant that sends
    app-only: its grant is made on first use, no one signs in); an active one, or OAuth 2.0
    off, resolves what asked for a sign-in."""
    keys = (administrator_key(tenant.tenant_id), administrator_prompt_key(tenant.tenant_id))
    if not tenant.oauth_enabled:
        return [Resolve(key, OAUTH_OFF) for key in keys]
    address = tenant.administrator_address
    if tenant.identity.app_only or not address:
        return []
    administrators = [grant for grant in grants if grant.principal.kind is PrincipalKind.ADMINISTRATOR]
    mine = [grant for grant in administrators if grant.principal.address.casefold() == address.casefold()]
    if not mine:
        if administrators:
            # A grant of an earlier address or provider: token-service marks it and its event
            # raises the alert saying what changed, which this prompt would cover up.
            return []
        return [wording.administrator_not_signed_in(tenant.tenant_id, address)]
    if mine[0].status is GrantStatus.ACTIVE:
        return [Resolve(key, ADMINISTRATOR_SIGNED_IN) for key in keys]
    return []
