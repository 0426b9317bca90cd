"""What token-service's answer means for a delivery."""

from __future__ import annotations

from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenReply,
    Principal,
    PrincipalKind,
    Provider,
)
from fleetmail_contracts.transports import Transport

from ..errors import AwaitingAuthorization, ConfigurationError, ReauthorizationNeeded, TokenUnavailable

SIGN_IN_HELPS = frozenset({AccessTokenOutcome.NO_GRANT, AccessTokenOutcome.REAUTHORIZATION_REQUIRED})


def access_token_of(reply: AccessTokenReply, principal: Principal) -> str:
    """The access token in `reply`, or the error that says why there is none.

    - no grant for a login user, or one the provider refused for good: the job waits for
      their sign-in (`AwaitingAuthorization`); a dead grant is the user's to renew, and no
      administrator action helps;
    - no administrator grant yet (OAuth 2.0 on, never acquired): the job waits for [Acquire];
    - the provider cannot answer now: retry (`TokenUnavailable`, with its Retry-After);
    - fleetmail or the tenant set up wrongly: fix a setting (`ConfigurationError`);
    - anything else (a dead administrator grant): acquire it again.
    """
    if reply.outcome is AccessTokenOutcome.GRANTED and reply.access_token:
        return reply.access_token
    if principal.kind is PrincipalKind.USER and reply.outcome in SIGN_IN_HELPS:
        raise AwaitingAuthorization(principal.address)
    if principal.kind is PrincipalKind.ADMINISTRATOR and reply.outcome is AccessTokenOutcome.NO_GRANT:
        raise AwaitingAuthorization(principal.address, administrator=True)
    if reply.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE:
        raise TokenUnavailable(reply.detail or "the identity provider is unavailable", reply.retry_after_s)
    if reply.outcome is AccessTokenOutcome.CONFIGURATION_ERROR:
        # token-service's detail names the setting and the fix: it is the remedy too (the
        # alert shows the remedy), not only the job's detail.
        raise ConfigurationError(
            reply.detail or f"no token can be had for {principal.address} until a setting is fixed",
            f"A setting must be fixed before this sender can send: {reply.detail.rstrip('. ')}. "
            f"{NOT_SIGNING_IN_AGAIN}"
            if reply.detail
            else None,
        )
    raise ReauthorizationNeeded(reply.detail or f"no usable grant for {principal.address}")


NOT_SIGNING_IN_AGAIN = "Signing in again does not help: it would get the same token."
TOKEN_NOT_ACCEPTED_REMEDIES: dict[tuple[Provider, bool], str] = {
    (Provider.MICROSOFT, False): (
        "The token is for another resource or lacks SMTP.Send: Exchange takes tokens for the "
        "audience https://outlook.office.com with the scope https://outlook.office.com/SMTP.Send, "
        "not Microsoft Graph's (https://graph.microsoft.com/Mail.Send). Set "
        "FLEETMAIL_TOKEN_MICROSOFT_SCOPES to it and give the app registration the delegated "
        "permission SMTP.Send (Office 365 Exchange Online) with consent."
    ),
    (Provider.MICROSOFT, True): (
        "The app-only token does not carry the role SMTP.SendAsApp, or the app may not use this "
        "mailbox: an administrator grants admin consent for the application permission "
        "SMTP.SendAsApp (Entra admin center → App registrations → the app → API permissions → "
        "Office 365 Exchange Online → Grant admin consent), registers the app's service principal "
        "in Exchange (New-ServicePrincipal) and gives it the mailbox (Add-MailboxPermission "
        "-AccessRights FullAccess). The scope must be https://outlook.office365.com/.default."
    ),
    (Provider.GOOGLE, False): (
        "The token does not carry the scope https://mail.google.com/, the only one Gmail's SMTP "
        "takes: set FLEETMAIL_TOKEN_GOOGLE_SCOPES to include it and enable it on the OAuth "
        "consent screen."
    ),
    (Provider.GOOGLE, True): (
        "The service account's token does not carry https://mail.google.com/: a Workspace "
        "administrator adds that scope to the client's domain-wide delegation (Admin console → "
        "Security → API controls → Domain-wide delegation)."
    ),
}


API_TOKEN_NOT_ACCEPTED_REMEDIES: dict[Transport, str] = {
    Transport.GRAPH: (
        "Microsoft Graph takes tokens for the audience https://graph.microsoft.com with Mail.Send: "
        "FLEETMAIL_TOKEN_MICROSOFT_GRAPH_SCOPES (delegated) or "
        "FLEETMAIL_TOKEN_MICROSOFT_GRAPH_APP_ONLY_SCOPE (app-only, admin consent for the "
        "application permission Mail.Send) must name it."
    ),
    Transport.GMAIL_API: (
        "The Gmail API takes tokens with https://www.googleapis.com/auth/gmail.send (or a broader "
        "Gmail scope): FLEETMAIL_TOKEN_GOOGLE_GMAIL_API_SCOPES must include it."
    ),
}


def token_not_accepted_remedy(
    provider: Provider, app_only: bool, transport: Transport = Transport.SMTP
) -> str:
    """What to fix when the server (SMTP, or the mail API) refuses a token the provider had
    just issued."""
    wrong = (
        API_TOKEN_NOT_ACCEPTED_REMEDIES.get(transport) or TOKEN_NOT_ACCEPTED_REMEDIES[(provider, app_only)]
    )
    return f"{wrong} {NOT_SIGNING_IN_AGAIN}"
