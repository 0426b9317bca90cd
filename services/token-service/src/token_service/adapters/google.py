"""Google OAuth: authorization code with PKCE, refresh through google-auth, revocation.

The code exchange is one form POST, written here rather than pulling in
google-auth-oauthlib (and oauthlib with it) for it; refresh goes through google-auth's
`Credentials.refresh`, which works against any `token_uri`.

An answer that is not a JSON object (a proxy's HTML page, a cut-off body) is an
`UnreadableReply`: google-auth hands such a body on as a string (`RefreshError` with no
response data) or trips over it (`TypeError`), and neither is Google refusing anything.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import google.auth.transport.requests
import jwt
import requests
from fleetmail_contracts.tokens import Provider
from fleetmail_runtime.outbound import OutboundPolicy
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials

from ..domain import GOOGLE_SETTINGS, configuration_setting
from ..errors import (
    ConfigurationError,
    ProviderUnavailable,
    ReauthorizationRequired,
    SignInFailed,
    UnreadableReply,
)
from ..model import TokenResult
from .credentials import SERVICE_ACCOUNT_SETTING
from .http import Proxy, provider_session

log = logging.getLogger(__name__)

DELEGATION_SETTING = "domain-wide delegation (client id and scope) in the Workspace admin console"
DELEGATION_PAGE = "Admin console → Security → Access and data control → API controls → Domain-wide delegation"


def authorize(info: dict[str, Any], scopes: list[str]) -> str:
    """What a Workspace administrator does for a service account Google refuses to delegate:
    the client id and the exact scopes, as the Domain-wide delegation page asks for them."""
    client_id = info.get("client_id") or "of the service account"
    return (
        f"a Workspace administrator authorizes client id {client_id} for {','.join(scopes)} "
        f"({DELEGATION_PAGE}), or the key is not the service account's"
    )


@dataclass(frozen=True)
class GoogleApp:
    client_id: str
    client_secret: str | None = field(repr=False)
    auth_uri: str
    token_uri: str
    revoke_uri: str
    proxy: Proxy | None = None


@dataclass(frozen=True)
class PkceRequest:
    authorization_url: str
    state: str
    code_verifier: str

    def __repr__(self) -> str:
        return f"PkceRequest(state={self.state[:6]}…)"


def unreadable(exc: RefreshError) -> bool:
    """google-auth's RefreshError over a body that was not a JSON object, or that had neither
    an error nor a token: what it carries as response data (its second argument) is no dict
    with an `error`."""
    data = exc.args[1] if len(exc.args) > 1 else None
    return not isinstance(data, dict) or "error" not in data


def claims_of(id_token: str | None) -> dict[str, Any]:
    """The id_token's claims. It came straight from the token endpoint over TLS, which OpenID
    Connect accepts in place of a signature check."""
    if not id_token:
        return {}
    claims: dict[str, Any] = jwt.decode(id_token, options={"verify_signature": False})
    return claims


class GoogleIdentity:
    def __init__(self, ca_bundle: Path | None, timeout_s: float, outbound: OutboundPolicy) -> None:
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._outbound = outbound

    def _session(self, app: GoogleApp) -> requests.Session:
        return provider_session(self._ca_bundle, app.proxy, self._timeout_s, outbound=self._outbound)

    def authorization_request(
        self, app: GoogleApp, scopes: list[str], redirect_uri: str, login_hint: str
    ) -> PkceRequest:
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(24)
        query = {
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(scopes),
            "access_type": "offline",
            # A refresh token comes only with consent; re-authorisation must ask again.
            "prompt": "consent",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "login_hint": login_hint,
            "include_granted_scopes": "true",
        }
        return PkceRequest(f"{app.auth_uri}?{urlencode(query)}", state, verifier)

    async def redeem_code(
        self, app: GoogleApp, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenResult:
        def call() -> TokenResult:
            data = {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
                "client_id": app.client_id,
            }
            if app.client_secret:
                data["client_secret"] = app.client_secret
            try:
                response = self._session(app).post(app.token_uri, data=data)
            except requests.RequestException as exc:
                raise ProviderUnavailable(f"code redemption failed: {type(exc).__name__}", 5.0) from exc
            if response.status_code >= 500 or response.status_code == 429:
                raise ProviderUnavailable(f"code redemption failed: HTTP {response.status_code}", 5.0)
            try:
                body = response.json()
            except ValueError as exc:
                raise UnreadableReply("code redemption") from exc
            if not isinstance(body, dict) or (response.status_code == 200 and "access_token" not in body):
                raise UnreadableReply("code redemption")
            if response.status_code != 200:
                error = str(body.get("error", response.status_code))
                if error in GOOGLE_SETTINGS:
                    raise ConfigurationError(
                        f"Google refused the sign-in ({error})",
                        setting=configuration_setting(Provider.GOOGLE, error),
                    )
                raise SignInFailed(f"Google refused the sign-in ({error})")
            return TokenResult(
                access_token=body["access_token"],
                expires_in=float(body.get("expires_in", 3599)),
                refresh_token=body.get("refresh_token"),
                id_token_claims=claims_of(body.get("id_token")),
                scopes=tuple(str(body.get("scope", "")).split()),
            )

        return await asyncio.to_thread(call)

    async def refresh(self, app: GoogleApp, refresh_token: str, scopes: list[str]) -> TokenResult:
        def call() -> TokenResult:
            credentials = Credentials(  # type: ignore[no-untyped-call]
                None,
                refresh_token=refresh_token,
                token_uri=app.token_uri,
                client_id=app.client_id,
                client_secret=app.client_secret,
                scopes=scopes,
            )
            try:
                credentials.refresh(  # type: ignore[no-untyped-call]
                    google.auth.transport.requests.Request(self._session(app))
                )
            except RefreshError as exc:
                if exc.retryable:
                    raise ProviderUnavailable("Google's token endpoint is unavailable", 5.0) from exc
                if unreadable(exc):
                    raise UnreadableReply("token refresh") from exc
                # Classified by the error code google-auth puts first ("invalid_grant: …").
                error = str(exc.args[0]).split(":", 1)[0] if exc.args else "unknown"
                if error == "invalid_grant":
                    raise ReauthorizationRequired(
                        "Google refused the grant (invalid_grant); sign in again", "invalid_grant"
                    ) from exc
                raise ConfigurationError(
                    f"Google refused the refresh ({error})",
                    setting=configuration_setting(Provider.GOOGLE, error),
                ) from exc
            except TransportError as exc:
                raise ProviderUnavailable("cannot reach Google's token endpoint", 5.0) from exc
            except (TypeError, ValueError) as exc:  # a 200 whose body is no JSON object
                raise UnreadableReply("token refresh") from exc
            assert credentials.token is not None and credentials.expiry is not None
            # Google does not rotate refresh tokens: google-auth keeps the old one.
            new_refresh = credentials.refresh_token if credentials.refresh_token != refresh_token else None
            now = datetime.now(UTC).replace(tzinfo=None)  # google-auth's expiry is naive UTC
            remaining = (credentials.expiry - now).total_seconds()
            return TokenResult(credentials.token, remaining, new_refresh, {}, tuple(scopes))

        return await asyncio.to_thread(call)

    async def service_account_token(
        self, info: dict[str, Any], subject: str, scopes: list[str], proxy: Proxy | None
    ) -> TokenResult:
        """App-only: a service account with domain-wide delegation acts as `subject`."""

        def call() -> TokenResult:
            try:
                credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=scopes, subject=subject
                )
            except (ValueError, KeyError) as exc:
                raise ConfigurationError(
                    f"the Google service account key is unusable ({exc})", setting=SERVICE_ACCOUNT_SETTING
                ) from exc
            session = provider_session(self._ca_bundle, proxy, self._timeout_s, outbound=self._outbound)
            try:
                credentials.refresh(google.auth.transport.requests.Request(session))
            except RefreshError as exc:
                if exc.retryable:
                    raise ProviderUnavailable("Google's token endpoint is unavailable", 5.0) from exc
                if unreadable(exc):
                    raise UnreadableReply("app-only token request") from exc
                said = str(exc.args[0]) if exc.args else "unknown"
                raise ConfigurationError(
                    f"Google refused the service account for {subject} ({said}): {authorize(info, scopes)}",
                    setting=DELEGATION_SETTING,
                ) from exc
            except TransportError as exc:
                raise ProviderUnavailable("cannot reach Google's token endpoint", 5.0) from exc
            except (TypeError, ValueError) as exc:
                raise UnreadableReply("app-only token request") from exc
            assert credentials.token is not None and credentials.expiry is not None
            now = datetime.now(UTC).replace(tzinfo=None)
            remaining = (credentials.expiry - now).total_seconds()
            return TokenResult(credentials.token, remaining, None, {}, tuple(scopes))

        return await asyncio.to_thread(call)

    async def revoke(self, app: GoogleApp, token: str) -> None:
        """Revoke at Google, through the proxy like every other call. A courtesy: the grant is
        deleted here whatever Google says; a proxy's refusal is a `ConfigurationError`."""

        def call() -> None:
            try:
                self._session(app).post(app.revoke_uri, data={"token": token})
            except requests.RequestException as exc:
                log.warning("Google's revocation endpoint could not be reached (%s)", type(exc).__name__)
            except ProviderUnavailable as exc:
                log.warning("did not revoke a grant at Google: %s", exc)

        await asyncio.to_thread(call)
