"""Entra ID's vocabulary, as the Microsoft emulator answers with it: its error bodies (AADSTS
codes, with `suberror` where Entra sends one), its resources and their permissions, and how a
directory is named.

A token's audience is the resource (application id URI) its scopes name; a bare permission is
Microsoft Graph's. An app-only token carries the application permissions of its resource
that an administrator consented to.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

SMTP_AUDIENCE = "https://outlook.office.com"
APP_ONLY_AUDIENCE = "https://outlook.office365.com"

ERRORS: dict[int, tuple[str, str]] = {
    50173: (
        "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        "The user might have changed or reset their password.",
    ),
    700082: (
        "invalid_grant",
        "The refresh token has expired due to inactivity. The token was issued on {issued} "
        "and was inactive for 90.00:00:00.",
    ),
    70008: ("invalid_grant", "The provided authorization code or refresh token has expired."),
    70000: ("invalid_grant", "Provided grant is invalid or malformed."),
    70016: ("authorization_pending", "OAuth 2.0 device flow error. Authorization is pending."),
    70019: ("expired_token", "Verification code expired."),
    90120: ("invalid_grant", "The device code was already redeemed or declined."),
    50076: (
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to a new "
        "location, you must use multi-factor authentication to access '{resource}'.",
    ),
    50079: (
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to a new "
        "location, you must enroll in multi-factor authentication to access '{resource}'.",
    ),
    65001: (
        "invalid_grant",
        "The user or administrator has not consented to use the application with ID '{client_id}'. "
        "Send an interactive authorization request for this user and resource.",
    ),
    7000222: (
        "invalid_client",
        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
        "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
        "credentials for added security: https://aka.ms/certCreds.",
    ),
    53003: (
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not allow "
        "token issuance.",
    ),
    50196: (
        "invalid_grant",
        "The server terminated an operation because it encountered a client request loop. Please "
        "contact your app vendor.",
    ),
    500011: (
        "invalid_resource",
        "The resource principal named {resource} was not found in the tenant named {tenant}. This can "
        "happen if the application has not been installed by the administrator of the tenant.",
    ),
    500121: ("authorization_declined", "Authentication failed during strong authentication request."),
    70011: (
        "invalid_scope",
        "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    ),
    700016: (
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
    ),
    7000215: (
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID.",
    ),
    9002313: ("invalid_request", "Invalid request. Request is malformed or invalid."),
    50011: (
        "invalid_request",
        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
        "configured for the application '{client_id}'.",
    ),
    50148: (
        "invalid_grant",
        "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
    ),
    54005: (
        "invalid_grant",
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code.",
    ),
    900144: ("invalid_request", "The request body must contain the following parameter: '{parameter}'."),
    90014: ("invalid_request", "The request was throttled."),
    700005: (
        "invalid_grant",
        "Provided Authorization Code is intended to use against other tenant, thus rejected.",
    ),
    50059: (
        "invalid_request",
        "No tenant-identifying information found in either the request or implied by any provided "
        "credentials.",
    ),
    1002012: (
        "invalid_scope",
        "The provided value for scope {scope} is not valid. Client credential flows must have a scope "
        "value with /.default suffixed to the resource identifier (application ID URI).",
    ),
}


SUBERRORS = {50076: "basic_action", 50079: "basic_action", 65001: "consent_required", 53003: "message_only"}
"""The `suberror` Entra adds to some `invalid_grant` bodies, telling what would help."""

DEFAULT_FORMAT = {
    "resource": "https://outlook.office.com",
    "client_id": "00000000-0000-0000-0000-000000000000",
    "tenant": "organizations",
    "scope": "",
    "parameter": "",
    "redirect_uri": "",
    "issued": "",
}


def error_body(code: int, **fmt: str) -> dict[str, Any]:
    error, description = ERRORS[code]
    fmt = {**DEFAULT_FORMAT, **fmt}
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description.format(**fmt)} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        **({"suberror": SUBERRORS[code]} if code in SUBERRORS else {}),
    }


OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
GRAPH = "https://graph.microsoft.com"
EXCHANGE_PERMISSIONS = frozenset(
    {
        "SMTP.Send",
        "IMAP.AccessAsUser.All",
        "POP.AccessAsUser.All",
        "EWS.AccessAsUser.All",
        "Mail.Send",
        ".default",
    }
)
RESOURCES: dict[str, frozenset[str]] = {
    SMTP_AUDIENCE: EXCHANGE_PERMISSIONS,
    APP_ONLY_AUDIENCE: EXCHANGE_PERMISSIONS,
    GRAPH: frozenset({"Mail.Send", "Mail.Read", "Mail.ReadWrite", "User.Read", ".default"}),
}
"""The resources (their application id URIs) and the permissions each has: a token's
audience is the resource its scopes name, its `scp` or `roles` the permissions."""
APP_ROLES: dict[str, frozenset[str]] = {
    SMTP_AUDIENCE: frozenset({"SMTP.SendAsApp", "full_access_as_app", "IMAP.AccessAsApp", "POP.AccessAsApp"}),
    APP_ONLY_AUDIENCE: frozenset(
        {"SMTP.SendAsApp", "full_access_as_app", "IMAP.AccessAsApp", "POP.AccessAsApp"}
    ),
    GRAPH: frozenset({"Mail.Send", "Mail.Read", "Mail.ReadWrite", "User.Read.All"}),
}
"""Application permissions per resource: an app-only token carries those of its resource that
an administrator consented to in the directory."""
DIRECTORY_ALIASES = frozenset({"organizations", "common", "consumers"})


def resource_of(scope: str) -> tuple[str, str] | None:
    """(resource, permission) of a scope; a bare permission is Microsoft Graph's, as in Entra.
    None: not a well-formed scope."""
    if "/" not in scope:
        return (GRAPH, scope) if scope and ":" not in scope else None
    resource, _, permission = scope.rpartition("/")
    if not resource.startswith("https://") or resource.count("/") != 2 or not permission:
        return None
    return resource, permission


def audience_of(scopes: list[str]) -> str:
    """The resource a token request is for: the one its scopes name (Graph for OIDC alone)."""
    for scope in scopes:
        if scope not in OIDC_SCOPES and (found := resource_of(scope)) is not None:
            return found[0]
    return GRAPH


DIRECTORY_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MSA_DIRECTORY = "9188040d-6c67-4c5b-b112-36a304b66dad"
"""The directory of personal Microsoft accounts, as Entra's id tokens name it."""


def directory_id(name: str) -> str:
    """A directory's id from how an authority path names it: an id is itself, a domain has an
    id of its own (stable, so the SMTP emulator can name a mailbox's directory the same way)."""
    if DIRECTORY_ID.match(name):
        return name.lower()
    if name == "consumers":
        return MSA_DIRECTORY
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fleetmail-emulator/{name.lower()}"))
