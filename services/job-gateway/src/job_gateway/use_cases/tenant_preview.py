"""What a change of a tenant's settings does, said before it is saved. Pure.

The rules are the ones that act after the save, not restated: a grant the new settings no
longer fit is the one token-service marks for a new sign-in (`fleetmail_runtime.drift`); the
administrator's prompt is raised when OAuth 2.0 is on for an address without a token (the
notifier's rule, as `domain.token_status` finds that token); with OAuth 2.0 off mail-service
sends with the SMTP server's user name and password.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import GrantStatus, GrantView, PrincipalKind
from fleetmail_contracts.transports import Transport
from fleetmail_runtime.drift import PROVIDER_NAMES, settings_drift

from ..domain import token_status

USERS_NAMED = 5
"""Login users named one by one in a consequence; more are counted."""


def _drifted(grant: GrantView, settings: TenantSettings | None) -> str | None:
    if settings is None:
        return None
    found = settings_drift(grant.principal, grant.provider, settings.administrator_address, settings.provider)
    return None if found is None else found[1]


def _server(settings: TenantSettings) -> str:
    smtp = settings.effective_smtp()
    default = " (the provider's default)" if settings.smtp is None else ""
    return f"{smtp.host}:{smtp.port} ({smtp.security.value}){default}"


def settings_consequences(
    before: TenantSettings | None, after: TenantSettings, grants: Sequence[GrantView]
) -> list[str]:
    """What saving `after` over `before` (None: a new tenant) does to the tenant's sign-ins and
    its mail, in the words the console shows; empty when nothing that matters changes."""
    said: list[str] = []
    users: list[str] = []
    for grant in grants:
        if grant.status is not GrantStatus.ACTIVE or _drifted(grant, before) is not None:
            continue  # already needs a sign-in: this save changes nothing for it
        why = _drifted(grant, after)
        if why is None:
            continue
        if grant.principal.kind is PrincipalKind.ADMINISTRATOR:
            said.append(f"The administrator's refresh token stops working: {why}.")
        else:
            users.append(grant.principal.address)
    if users:
        named = ", ".join(users[:USERS_NAMED]) + (
            f" and {len(users) - USERS_NAMED} more" if len(users) > USERS_NAMED else ""
        )
        said.append(
            f"{len(users)} login user(s) must sign in again at the device ({named}): their refresh "
            f"tokens are not {PROVIDER_NAMES[after.provider]}'s."
        )
    was_on = before is not None and before.oauth_enabled
    if after.oauth_enabled and not was_on:
        acquired = token_status(after, grants).administrator.status == "acquired"
        if after.identity.app_only:
            said.append("OAuth 2.0 goes ON, sending with the app's own identity (app-only): no one signs in.")
        elif acquired:
            said.append(f"OAuth 2.0 goes ON: mail is sent with XOAUTH2 as {after.administrator_address}.")
        else:
            said.append(
                "OAuth 2.0 goes ON without an administrator token: the devices' [Information] "
                f"asks for [Acquire] until {after.administrator_address} signs in on this page, "
                "and mail sent as the administrator cannot go before that."
            )
    elif was_on and not after.oauth_enabled:
        said.append(
            "OAuth 2.0 goes OFF: mail is sent with the SMTP server's user name and password "
            "(Credentials below), or without authentication when none is set; the refresh tokens stay."
        )
    if before is not None:
        said.extend(_setting_changes(before, after))
    return said


TRANSPORT_NAMES = {
    Transport.SMTP: "SMTP (XOAUTH2)",
    Transport.GRAPH: "Microsoft Graph",
    Transport.GMAIL_API: "the Gmail API",
}


def _setting_changes(before: TenantSettings, after: TenantSettings) -> list[str]:
    said: list[str] = []
    if before.provider is not after.provider and after.smtp is None:
        said.append(f"Mail goes through {PROVIDER_NAMES[after.provider]}'s SMTP server, {_server(after)}.")
    elif before.effective_smtp() != after.effective_smtp():
        said.append(f"Mail goes through {_server(after)}.")
    if before.transport is not after.transport:
        said.append(
            f"Mail leaves through {TRANSPORT_NAMES[after.transport]}: the administrator's token must "
            "carry what it needs (the token status says whether it does; if not, [Acquire] again)."
        )
    if before.from_policy is not after.from_policy:
        said.append(f"The From address of devices' mail follows a new policy: {after.from_policy.value}.")
    if before.auto_delete != after.auto_delete:
        said.append(
            "Auto Delete ON: a user's refresh token is deleted when the user logs out at the device "
            "or at the device's auto reset."
            if after.auto_delete
            else "Auto Delete OFF: users' refresh tokens stay after logout and auto reset."
        )
    if before.proxy_url != after.proxy_url:
        said.append(
            "Sign-ins and mail go through the new proxy."
            if after.proxy_url
            else "Sign-ins and mail no longer use a proxy."
        )
    if before.identity != after.identity:
        said.append("New sign-ins and refreshes use the new identity settings.")
    if before.notifications != after.notifications:
        said.append("Alerts go to the new notification channels.")
    return said
