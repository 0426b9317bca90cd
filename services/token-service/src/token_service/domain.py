"""Pure decisions about grants: refresh timing, predicted death, error classes, identity.

No I/O and no clock: every function that needs the time takes `now`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from fleetmail_contracts.tokens import Principal, Provider

MICROSOFT_REFRESH_LIFETIME = timedelta(days=90)
GOOGLE_TESTING_LIFETIME = timedelta(days=7)
GOOGLE_IDLE_LIFETIME = timedelta(days=183)

TERMINAL_MICROSOFT_CODES = frozenset({50173, 700082, 70043, 70008, 54005, 700084})
TERMINAL_ERRORS = frozenset({"invalid_grant"})
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "too_many_requests"})

INTERACTION_CODES = frozenset({50076, 50079, 50074, 50158})
"""Entra wants the user at a screen (MFA, enrolment, an external challenge): the grant is
not revoked, but only an interactive sign-in gets past it."""
INTERACTION_SUBERRORS = frozenset({"basic_action", "additional_action"})

REQUEST_LOOP_CODE = 50196
REQUEST_LOOP_BACKOFF_S = 300.0
"""Entra refuses a client that repeats a request in a loop (AADSTS50196): asking again at
once keeps it refused, so the next try waits this long."""

CONFIGURATION_REMEDIES: dict[int, str] = {
    65001: "the app has no consent for the permission it asks for: an administrator grants it "
    "(Entra admin center → Enterprise applications → the app → Permissions → Grant admin consent, "
    "or https://login.microsoftonline.com/<directory>/adminconsent?client_id=<client id>)",
    7000222: "the app's client secret has expired: create a new one (Entra admin center → App "
    "registrations → the app → Certificates & secrets) and store it as the tenant's "
    "microsoft_client_secret or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_SECRET",
    7000215: "the app's client secret is wrong: store the secret's value (not its id) as the "
    "tenant's microsoft_client_secret or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_SECRET",
    53003: "a Conditional Access policy blocks tokens for this app: an administrator finds the "
    "policy in Entra's sign-in logs (by the correlation id) and excludes the app, or the "
    "service's network location, from it",
    500011: "the scope names a resource the directory does not have (wrong audience): SMTP needs "
    "https://outlook.office.com/SMTP.Send, app-only https://outlook.office365.com/.default "
    "(FLEETMAIL_TOKEN_MICROSOFT_SCOPES, FLEETMAIL_TOKEN_MICROSOFT_APP_ONLY_SCOPE)",
    70011: "a scope is wrong or mixes resources (Microsoft Graph and Outlook scopes cannot be "
    "asked for together): FLEETMAIL_TOKEN_MICROSOFT_SCOPES or FLEETMAIL_TOKEN_MICROSOFT_APP_ONLY_SCOPE",
    700005: "the sign-in and the code's redemption went to different directories: set the "
    "tenant's identity.directory to the users' own directory (its id or domain), or organizations",
    50059: "app-only sending needs a directory, not organizations or common: set the tenant's "
    "identity.directory (or FLEETMAIL_TOKEN_MICROSOFT_DIRECTORY) to the directory's id or domain",
    1002012: "client credentials take one scope ending in /.default: "
    "FLEETMAIL_TOKEN_MICROSOFT_APP_ONLY_SCOPE=https://outlook.office365.com/.default",
}
"""What an administrator does when Entra refuses for one of these codes: no sign-in helps."""


class ErrorClass(StrEnum):
    TERMINAL = "terminal"
    """Re-authorisation is needed: the grant is dead."""
    TRANSIENT = "transient"
    """Try again later: the grant stays good."""
    CONFIGURATION = "configuration"
    """The app registration or the request is wrong: an administrator must fix settings."""


@dataclass(frozen=True)
class ProviderError:
    error: str
    error_codes: tuple[int, ...]
    http_status: int | None = None
    retry_after_s: float | None = None
    suberror: str | None = None
    claims_challenge: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any], http_status: int | None = None) -> ProviderError:
        codes = tuple(int(c) for c in body.get("error_codes") or () if str(c).isdigit())
        suberror = body.get("suberror")
        return cls(
            str(body.get("error", "unknown")),
            codes,
            http_status,
            suberror=str(suberror) if suberror else None,
            claims_challenge=bool(body.get("claims")),
        )

    def has_code(self, *codes: int) -> bool:
        return any(code in self.error_codes for code in codes)

    @property
    def needs_interaction(self) -> bool:
        """MFA, enrolment or a claims challenge: a person must sign in, the grant is not dead."""
        return (
            self.error == "interaction_required"
            or self.suberror in INTERACTION_SUBERRORS
            or self.claims_challenge
            or bool(INTERACTION_CODES.intersection(self.error_codes))
        )

    @property
    def needs_consent(self) -> bool:
        return self.error == "consent_required" or self.suberror == "consent_required" or self.has_code(65001)


def classify(error: ProviderError) -> ErrorClass:
    """Classify a provider error by `error`, `error_codes` and `suberror`, never by
    description. `invalid_grant` alone says little: Entra sends it for revoked grants, for
    MFA and claims challenges, for missing consent and for Conditional Access blocks."""
    if error.http_status is not None and (error.http_status >= 500 or error.http_status == 429):
        return ErrorClass.TRANSIENT
    if error.error in TRANSIENT_ERRORS or error.has_code(REQUEST_LOOP_CODE):
        return ErrorClass.TRANSIENT
    if error.needs_consent or CONFIGURATION_REMEDIES.keys() & set(error.error_codes):
        return ErrorClass.CONFIGURATION
    if error.needs_interaction:
        return ErrorClass.TERMINAL
    if error.error in TERMINAL_ERRORS or TERMINAL_MICROSOFT_CODES.intersection(error.error_codes):
        return ErrorClass.TERMINAL
    return ErrorClass.CONFIGURATION


def reauthorization_reason(error: ProviderError) -> str:
    """Why a terminal error needs a new sign-in, in words an administrator or user acts on."""
    summary = f"{error.error} {list(error.error_codes)}".strip()
    if error.needs_interaction:
        return (
            f"the directory asks for an interactive step (multi-factor authentication, enrolment "
            f"or a Conditional Access claims challenge) that a refresh cannot give ({summary}); the "
            "grant is not revoked: sign in again and complete the step"
        )
    return f"the provider refused the grant ({summary}); sign in again"


def configuration_remedy(provider: Provider, error: ProviderError) -> str:
    """What to change when the provider refuses a request as misconfigured."""
    if error.needs_consent:
        return CONFIGURATION_REMEDIES[65001]
    for code in error.error_codes:
        if code in CONFIGURATION_REMEDIES:
            return CONFIGURATION_REMEDIES[code]
    if error.error == "invalid_resource":
        return CONFIGURATION_REMEDIES[500011]
    return configuration_setting(provider, error.error)


MICROSOFT_SETTINGS = {
    "invalid_client": "the app's client secret: microsoft_client_secret in the tenant's credentials "
    "(app-only) or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_SECRET",
    "unauthorized_client": "the app (client) id and directory: the tenant's identity.client_id and "
    "identity.directory, or FLEETMAIL_TOKEN_MICROSOFT_CLIENT_ID",
    "invalid_scope": "FLEETMAIL_TOKEN_MICROSOFT_SCOPES or FLEETMAIL_TOKEN_MICROSOFT_APP_ONLY_SCOPE",
}
GOOGLE_SETTINGS = {
    "invalid_client": "the Google OAuth client: the tenant's identity.client_id or "
    "FLEETMAIL_TOKEN_GOOGLE_CLIENT_ID, and FLEETMAIL_TOKEN_GOOGLE_CLIENT_SECRET",
    "unauthorized_client": "the Google OAuth client: the tenant's identity.client_id or "
    "FLEETMAIL_TOKEN_GOOGLE_CLIENT_ID",
    "invalid_scope": "FLEETMAIL_TOKEN_GOOGLE_SCOPES",
}


def configuration_setting(provider: Provider, error: str) -> str:
    """The setting to look at when the provider refuses a request as misconfigured."""
    if provider is Provider.MICROSOFT:
        default = (
            "the tenant's identity settings (identity.client_id, identity.directory, identity.authority_host)"
        )
        return MICROSOFT_SETTINGS.get(error, default)
    return GOOGLE_SETTINGS.get(
        error, "the tenant's identity settings (identity.client_id, identity.token_uri)"
    )


def needs_refresh(
    expires_at: datetime | None,
    now: datetime,
    margin: timedelta,
    issued_at: datetime | None = None,
) -> bool:
    """Refresh when less than `margin` remains — or half the lifetime, for short-lived tokens.

    Without the cap a token that lives less than the margin would be refreshed on every use.
    """
    if expires_at is None:
        return True
    if issued_at is not None:
        margin = min(margin, (expires_at - issued_at) / 2)
    return expires_at - now < margin


def keepalive_due(last_redeemed_at: datetime, now: datetime, idle: timedelta) -> bool:
    """A grant idle this long is redeemed, so the provider's inactivity limit never applies."""
    return now - last_redeemed_at >= idle


def expiring_soon(predicted_death_at: datetime | None, now: datetime, horizon: timedelta) -> bool:
    return predicted_death_at is not None and predicted_death_at - now <= horizon


def predicted_death(
    provider: Provider,
    last_redeemed_at: datetime,
    acquired_at: datetime,
    google_testing_mode: bool = False,
) -> datetime:
    """When the refresh token dies if nothing is done (Microsoft: 90 idle days)."""
    if provider is Provider.MICROSOFT:
        return last_redeemed_at + MICROSOFT_REFRESH_LIFETIME
    idle = last_redeemed_at + GOOGLE_IDLE_LIFETIME
    if google_testing_mode:
        return min(idle, acquired_at + GOOGLE_TESTING_LIFETIME)
    return idle


def signed_in_address(id_token_claims: dict[str, Any]) -> str | None:
    """The account's sign-in name (an Entra UPN, a Google address), for messages."""
    for claim in ("preferred_username", "upn", "email"):
        value = id_token_claims.get(claim)
        if isinstance(value, str) and "@" in value:
            return value
    return None


def mailbox_addresses(
    provider: Provider, id_token_claims: dict[str, Any], directory_pinned: bool
) -> set[str]:
    """The addresses an id token proves its account owns, casefolded.

    The sign-in name (`preferred_username`, `upn`) always: the directory issues it. The
    `email` claim (Entra's optional claim: the user's primary SMTP address, which differs from
    the UPN for many real users) only where it cannot be set by someone else: Google's when
    `email_verified`; Entra's when the directory owning the domain vouches for it
    (`xms_edov`) or the tenant's directory is pinned by id, so only that directory's
    administrators set it. Everything here is in the id token: no Graph permission is needed.
    """
    addresses = {
        value.casefold()
        for claim in ("preferred_username", "upn")
        if isinstance(value := id_token_claims.get(claim), str) and "@" in value
    }
    email = id_token_claims.get("email")
    if isinstance(email, str) and "@" in email:
        if provider is Provider.GOOGLE:
            trusted = id_token_claims.get("email_verified") in (True, "true")
        else:
            trusted = directory_pinned or id_token_claims.get("xms_edov") in (True, "true", "1", 1)
        if trusted:
            addresses.add(email.casefold())
    return addresses


def identity_matches(
    principal: Principal, id_token_claims: dict[str, Any], provider: Provider, directory_pinned: bool = False
) -> bool:
    return principal.address.casefold() in mailbox_addresses(provider, id_token_claims, directory_pinned)


def directory_pinned(directory: str | None) -> bool:
    """Whether a tenant's Microsoft directory is named by id, so its sign-ins' `tid` is checked."""
    return directory is not None and GUID.match(directory) is not None


RESERVED_SCOPES = frozenset({"openid", "email", "profile", "offline_access"})


def scopes_not_granted(requested: tuple[str, ...] | list[str], granted: tuple[str, ...]) -> list[str]:
    """The resource scopes asked for that the consent did not grant (a user may untick them
    on Google's consent screen). An answer that names no scopes is taken as granting all."""
    if not granted:
        return []
    return [s for s in requested if s not in RESERVED_SCOPES and s not in granted]


IDENTITY_CHANGED = "identity_settings_changed"
"""The error of a grant whose tenant now names another authority or client."""

OUTSIDE_MAIL_DOMAINS = "outside_mail_domains"
"""The error of a grant whose address is not in its tenant's mail domains (taken before the
rule existed, or the domain has left the list)."""


def grant_bound_to(
    grant_authority: str | None, grant_client_id: str | None, authority: str, client_id: str
) -> bool:
    """Whether a grant may be redeemed at `authority` by `client_id`: only where it was
    issued. A grant stored without its authority (before fleetmail recorded it) is taken to
    belong to the tenant's current settings, which are checked against the allowlist — and is
    stamped with them at its first sweep or refresh (`Refresher.stamp_legacy`), so a later
    change of settings no longer carries it along."""
    if grant_authority is None:
        return grant_client_id is None or grant_client_id == client_id
    same_authority = grant_authority.rstrip("/").casefold() == authority.rstrip("/").casefold()
    return same_authority and (grant_client_id is None or grant_client_id == client_id)


GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def directory_refusal(id_token_claims: dict[str, Any], directory: str | None) -> str | None:
    """Why a Microsoft sign-in is not from the tenant's directory, or None. Checked when the
    directory is configured as a tenant id (a GUID): the id token's `tid` must be it. A
    directory given by domain name or an alias (`organizations`) is not compared."""
    if directory is None or GUID.match(directory) is None:
        return None
    tid = id_token_claims.get("tid")
    if isinstance(tid, str) and tid.casefold() == directory.casefold():
        return None
    return f"the account signed in from directory {tid or 'unknown'}, not the tenant's directory {directory}"


def grant_id(principal: Principal) -> str:
    """One administrator grant per tenant; one grant per user address."""
    if principal.kind == "administrator":
        return f"{principal.tenant_id}:administrator"
    return f"{principal.tenant_id}:user:{principal.address.casefold()}"


def associated_data(principal: Principal, provider: Provider) -> bytes:
    """Binds a ciphertext to its grant: tenant, provider, principal and kind."""
    return "|".join(
        (principal.tenant_id, provider.value, principal.address.casefold(), principal.kind.value)
    ).encode()


def last_active(acquired_at: datetime, last_used_at: datetime | None) -> datetime:
    """When a person last did something with a grant: signed in, or sent with it. A
    keep-alive refresh is not a use."""
    return max(acquired_at, last_used_at) if last_used_at is not None else acquired_at


def user_grant_lapsed(active_at: datetime, now: datetime, idle_days: float) -> bool:
    """A login user's grant unused for the tenant's window is deleted rather than kept alive:
    a device stores a user's token only as long as it is used."""
    return now - active_at >= timedelta(days=idle_days)
