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
TERMINAL_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required"})
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "too_many_requests"})


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

    @classmethod
    def from_body(cls, body: dict[str, Any], http_status: int | None = None) -> ProviderError:
        codes = tuple(int(c) for c in body.get("error_codes") or () if str(c).isdigit())
        return cls(str(body.get("error", "unknown")), codes, http_status)


def classify(error: ProviderError) -> ErrorClass:
    """Classify a provider error by `error` and `error_codes` only, never by description."""
    if error.http_status is not None and (error.http_status >= 500 or error.http_status == 429):
        return ErrorClass.TRANSIENT
    if error.error in TRANSIENT_ERRORS:
        return ErrorClass.TRANSIENT
    if error.error in TERMINAL_ERRORS or TERMINAL_MICROSOFT_CODES.intersection(error.error_codes):
        return ErrorClass.TERMINAL
    return ErrorClass.CONFIGURATION


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
    for claim in ("email", "preferred_username", "upn"):
        value = id_token_claims.get(claim)
        if isinstance(value, str) and "@" in value:
            return value
    return None


def identity_matches(principal: Principal, id_token_claims: dict[str, Any]) -> bool:
    signed_in = signed_in_address(id_token_claims)
    return signed_in is not None and signed_in.casefold() == principal.address.casefold()


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
