"""How a tenant's mail leaves: SMTP `XOAUTH2` (the device's way), Microsoft Graph or the Gmail
API, and what each needs of the grant it sends with.

Graph and SMTP tokens have different audiences (`https://graph.microsoft.com` vs
`https://outlook.office.com`): one grant, the right resource per request. A Graph grant needs
`Mail.ReadWrite` besides `Mail.Send`: a message over Graph's 4 MB request limit goes as a draft
with upload sessions, and after a crash a message already accepted is found again in Sent
Items by its Internet Message-ID. The Gmail API needs only `gmail.send` (narrower than
`https://mail.google.com/`, which SMTP needs): Gmail answers a send with the message's id,
which is recorded before the job is acknowledged.
"""

from __future__ import annotations

from enum import StrEnum

from .tokens import Provider, TokenResource


class Transport(StrEnum):
    SMTP = "smtp"
    GRAPH = "graph"
    GMAIL_API = "gmail_api"


TRANSPORT_PROVIDER: dict[Transport, Provider | None] = {
    Transport.SMTP: None,
    Transport.GRAPH: Provider.MICROSOFT,
    Transport.GMAIL_API: Provider.GOOGLE,
}
"""The provider a transport belongs to (None: any)."""

TRANSPORT_RESOURCE: dict[Transport, TokenResource] = {
    Transport.SMTP: TokenResource.SMTP,
    Transport.GRAPH: TokenResource.GRAPH,
    Transport.GMAIL_API: TokenResource.GMAIL_API,
}

GRAPH = "https://graph.microsoft.com"
GMAIL = "https://www.googleapis.com/auth"
MAIL_GOOGLE = "https://mail.google.com/"

DELEGATED_SCOPES: dict[tuple[Provider, TokenResource], tuple[str, ...]] = {
    (Provider.MICROSOFT, TokenResource.SMTP): ("https://outlook.office.com/SMTP.Send",),
    (Provider.MICROSOFT, TokenResource.GRAPH): (f"{GRAPH}/Mail.Send", f"{GRAPH}/Mail.ReadWrite"),
    (Provider.GOOGLE, TokenResource.SMTP): (MAIL_GOOGLE,),
    (Provider.GOOGLE, TokenResource.GMAIL_API): (f"{GMAIL}/gmail.send",),
}
"""The scopes a user consents to for each transport (Microsoft's resource scopes of one
resource only: Entra refuses Graph and Outlook scopes in one request)."""

APP_ONLY_PERMISSIONS: dict[tuple[Provider, TokenResource], tuple[str, ...]] = {
    (Provider.MICROSOFT, TokenResource.SMTP): ("SMTP.SendAsApp",),
    (Provider.MICROSOFT, TokenResource.GRAPH): ("Mail.Send", "Mail.ReadWrite"),
    (Provider.GOOGLE, TokenResource.SMTP): (MAIL_GOOGLE,),
    (Provider.GOOGLE, TokenResource.GMAIL_API): (f"{GMAIL}/gmail.send",),
}
"""What an administrator grants an app that sends as itself: Entra application permissions
(admin consent), or the scopes of a Google service account's domain-wide delegation."""

COVERED_BY: dict[str, frozenset[str]] = {
    f"{GMAIL}/gmail.send": frozenset(
        {f"{GMAIL}/gmail.send", f"{GMAIL}/gmail.compose", f"{GMAIL}/gmail.modify", MAIL_GOOGLE}
    ),
}
"""Scopes that a broader one includes (Google's scope reference)."""


def transport_refusal(transport: Transport, provider: Provider) -> str | None:
    """Why a tenant of `provider` cannot send through `transport`, or None."""
    owner = TRANSPORT_PROVIDER[transport]
    if owner is None or owner is provider:
        return None
    fitting = ", ".join(t.value for t, p in TRANSPORT_PROVIDER.items() if p in (None, provider))
    return (
        f"transport {transport.value} is {owner.value}'s API: it needs provider {owner.value}, and this "
        f"tenant's provider is {provider.value} (its transports: {fitting})"
    )


def needed_scopes(provider: Provider, transport: Transport, app_only: bool = False) -> tuple[str, ...]:
    """The scopes (app-only Microsoft: the application permissions) `transport` needs."""
    table = APP_ONLY_PERMISSIONS if app_only else DELEGATED_SCOPES
    return table[(provider, TRANSPORT_RESOURCE[transport])]


def normalised(scope: str) -> str:
    """A scope as compared: a bare Microsoft permission is Microsoft Graph's, as Entra reads it."""
    if (
        "/" not in scope
        and ":" not in scope
        and scope not in ("openid", "email", "profile", "offline_access")
    ):
        return f"{GRAPH}/{scope}".casefold()
    return scope.casefold()


def resource_of_scopes(provider: Provider, scopes: tuple[str, ...]) -> TokenResource:
    """The resource a grant's scopes were consented for: Graph's when one names Graph (or is
    a bare `Mail.` permission, as Entra names Graph's); else SMTP's, the only one before
    transports (a grant that names none included)."""
    if provider is Provider.MICROSOFT:
        graph = any(s.casefold().startswith((f"{GRAPH}/".casefold(), "mail.")) for s in scopes)
        return TokenResource.GRAPH if graph else TokenResource.SMTP
    gmail_api = bool(scopes) and not missing_scopes(
        DELEGATED_SCOPES[(provider, TokenResource.GMAIL_API)], scopes
    )
    return TokenResource.GMAIL_API if gmail_api and MAIL_GOOGLE not in scopes else TokenResource.SMTP


def missing_scopes(needed: tuple[str, ...], granted: tuple[str, ...]) -> tuple[str, ...]:
    """The needed scopes no granted scope covers."""
    have = {normalised(s) for s in granted}
    return tuple(s for s in needed if not ({normalised(c) for c in COVERED_BY.get(s, frozenset({s}))} & have))
