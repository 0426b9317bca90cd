"""Microsoft identity platform through MSAL Python.

MSAL is synchronous; every call runs in a worker thread so the service never blocks.
MSAL answers 429 and 5xx by raising, and replays that answer without calling the server
for the Retry-After time (60 s when the server gave none). Both become
`ProviderUnavailable`, whose retry-after is when MSAL will call the server again.
fleetmail keeps its own encrypted refresh tokens, so refresh goes through
`acquire_token_by_refresh_token` (MSAL's documented path for refresh tokens held elsewhere).
An answer below 500 that is not a JSON object (a proxy's HTML page, a cut-off body) makes
MSAL raise `ValueError` or trip over it later (`TypeError`, `AttributeError`); every such
answer is an `UnreadableReply`, whichever way MSAL failed on it.

Device code with a client secret: Entra accepts the device code grant from a confidential
client when the token request carries its secret, but MSAL puts `initiate_device_flow` and
`acquire_token_by_device_flow` on `PublicClientApplication` only. Both methods use nothing
of the public client but the shared `ClientApplication` machinery, so a confidential app
borrows them (`ConfidentialDeviceFlowApp`): the devicecode request is the same, and every
poll goes through MSAL's own client, which authenticates with the secret — no hand-written
token request, MSAL's error handling and throttling unchanged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msal
import requests
from fleetmail_contracts.tokens import Provider
from fleetmail_runtime.outbound import OutboundPolicy
from msal.exceptions import MsalServiceError

from ..domain import (
    REQUEST_LOOP_BACKOFF_S,
    REQUEST_LOOP_CODE,
    ErrorClass,
    ProviderError,
    classify,
    configuration_remedy,
    reauthorization_reason,
)
from ..errors import (
    ConfigurationError,
    ProviderUnavailable,
    ReauthorizationRequired,
    SignInFailed,
    UnreadableReply,
)
from ..model import TokenResult
from .http import Proxy, ThrottleClock, provider_session


@dataclass(frozen=True)
class MicrosoftApp:
    authority: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    proxy: Proxy | None = None


def unavailable(what: str, exc: Exception, retry_after_s: float) -> ProviderUnavailable:
    # MSAL's text is just "HTTP Error: <status>"; a connection error's is requests' own.
    detail = str(exc) if isinstance(exc, MsalServiceError) else type(exc).__name__
    return ProviderUnavailable(f"{what} failed: {detail}", retry_after_s)


class ConfidentialDeviceFlowApp(msal.ConfidentialClientApplication):  # type: ignore[misc]  # msal is untyped
    """A confidential client that can also run the device code flow (see the module docstring)."""

    DEVICE_FLOW_CORRELATION_ID = msal.PublicClientApplication.DEVICE_FLOW_CORRELATION_ID
    initiate_device_flow = msal.PublicClientApplication.initiate_device_flow
    acquire_token_by_device_flow = msal.PublicClientApplication.acquire_token_by_device_flow


NOT_A_REPLY = (json.JSONDecodeError, TypeError, AttributeError)
"""How MSAL fails on an answer that is not a JSON object: `json.loads` raises, or the code
after it indexes a list or a string."""


def read_reply(what: str, call: Callable[[], Any], retry_after_s: Callable[[], float]) -> dict[str, Any]:
    """MSAL's parsed answer, which must be a JSON object; anything else is `UnreadableReply`,
    to be tried again when MSAL will call the server again (it replays a 5xx until then)."""
    try:
        result = call()
    except NOT_A_REPLY as exc:
        raise UnreadableReply(what, retry_after_s()) from exc
    if not isinstance(result, dict):
        raise UnreadableReply(what, retry_after_s())
    return result


def raise_for_error(result: dict[str, Any], what: str = "token request") -> None:
    if "error" not in result:
        if "access_token" not in result:
            raise UnreadableReply(what)
        return
    error = ProviderError.from_body(result)
    klass = classify(error)
    summary = f"{error.error} {list(error.error_codes)}".strip()
    if klass is ErrorClass.TERMINAL:
        # Interaction (MFA, a claims challenge) is named as such: the grant is not revoked.
        code = "interaction_required" if error.needs_interaction else error.error
        raise ReauthorizationRequired(reauthorization_reason(error), code, error.error_codes)
    if klass is ErrorClass.TRANSIENT:
        retry_after = REQUEST_LOOP_BACKOFF_S if error.has_code(REQUEST_LOOP_CODE) else None
        raise ProviderUnavailable(f"the identity provider is unavailable ({summary})", retry_after)
    raise ConfigurationError(
        f"the identity provider refused the request as misconfigured ({summary}); signing in again "
        f"does not help: {configuration_remedy(Provider.MICROSOFT, error)}",
        setting=configuration_remedy(Provider.MICROSOFT, error),
    )


class MicrosoftIdentity:
    """One MSAL application per (authority, client id), built on first use."""

    def __init__(self, ca_bundle: Path | None, timeout_s: float, outbound: OutboundPolicy) -> None:
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._outbound = outbound
        self._apps: dict[MicrosoftApp, msal.ClientApplication] = {}
        self._lock = threading.Lock()
        self._throttle = ThrottleClock()

    def _app(self, app: MicrosoftApp) -> msal.ClientApplication:
        with self._lock:
            existing = self._apps.get(app)
            if existing is not None:
                return existing
            session = provider_session(
                self._ca_bundle, app.proxy, self._timeout_s, self._throttle, outbound=self._outbound
            )
            common: dict[str, Any] = {
                "authority": app.authority,
                "http_client": session,
                "instance_discovery": not self._is_custom_host(app.authority),
            }
            try:
                client: msal.ClientApplication
                if app.client_secret:
                    client = ConfidentialDeviceFlowApp(
                        app.client_id, client_credential=app.client_secret, **common
                    )
                else:
                    client = msal.PublicClientApplication(app.client_id, **common)
            except (requests.RequestException, ValueError) as exc:
                raise ProviderUnavailable(
                    f"cannot reach the identity provider at {app.authority}: {type(exc).__name__}"
                ) from exc
            self._apps[app] = client
            return client

    def _wait(self, app: MicrosoftApp) -> Callable[[], float]:
        """How long until MSAL calls the app's authority again (it replays a 429/5xx until then)."""
        return lambda: self._throttle.retry_after(app.authority)

    @staticmethod
    def _is_custom_host(authority: str) -> bool:
        known = ("login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn")
        return not any(f"//{host}/" in authority for host in known)

    async def initiate_device_flow(self, app: MicrosoftApp, scopes: list[str]) -> dict[str, Any]:
        what = "device code request"

        def call() -> dict[str, Any]:
            client, wait = self._app(app), self._wait(app)
            try:
                flow = read_reply(what, lambda: client.initiate_device_flow(scopes=scopes), wait)
            except (requests.RequestException, MsalServiceError) as exc:
                raise unavailable(what, exc, self._throttle.retry_after(app.authority)) from exc
            if not {"user_code", "device_code"} <= flow.keys():
                raise_for_error(flow, what)
            return flow

        return await asyncio.to_thread(call)

    async def poll_device_flow(self, app: MicrosoftApp, flow: dict[str, Any]) -> TokenResult | None:
        """One non-blocking poll: None while the user has not finished signing in."""

        what = "device code poll"

        def call() -> dict[str, Any]:
            client, wait = self._app(app), self._wait(app)
            try:
                return read_reply(
                    what,
                    lambda: client.acquire_token_by_device_flow(flow, exit_condition=lambda _: True),
                    wait,
                )
            except (requests.RequestException, MsalServiceError) as exc:
                raise unavailable(what, exc, self._throttle.retry_after(app.authority)) from exc

        result = await asyncio.to_thread(call)
        if result.get("error") in ("authorization_pending", "slow_down"):
            return None
        raise_for_error(result, what)
        return token_result(result, what)

    async def initiate_auth_code_flow(
        self, app: MicrosoftApp, scopes: list[str], redirect_uri: str, login_hint: str
    ) -> dict[str, Any]:
        """PKCE (S256), state and nonce by MSAL; the answer comes back as a form post."""

        def call() -> dict[str, Any]:
            flow: dict[str, Any] = self._app(app).initiate_auth_code_flow(
                scopes, redirect_uri=redirect_uri, login_hint=login_hint, response_mode="form_post"
            )
            return flow

        return await asyncio.to_thread(call)

    async def redeem_auth_code(
        self, app: MicrosoftApp, flow: dict[str, Any], auth_response: dict[str, str]
    ) -> TokenResult:
        what = "code redemption"

        def call() -> dict[str, Any]:
            client, wait = self._app(app), self._wait(app)
            try:
                return read_reply(
                    what, lambda: client.acquire_token_by_auth_code_flow(flow, auth_response), wait
                )
            except UnreadableReply:
                raise  # a JSONDecodeError is a ValueError too, but not a mismatch
            except ValueError as exc:  # state or nonce mismatch: MSAL refuses the answer
                raise SignInFailed("the sign-in answer does not match the sign-in request") from exc
            except (requests.RequestException, MsalServiceError) as exc:
                raise unavailable(what, exc, self._throttle.retry_after(app.authority)) from exc

        result = await asyncio.to_thread(call)
        raise_for_error(result, what)
        return token_result(result, what)

    async def refresh(self, app: MicrosoftApp, refresh_token: str, scopes: list[str]) -> TokenResult:
        what = "token refresh"

        def call() -> dict[str, Any]:
            client, wait = self._app(app), self._wait(app)
            try:
                return read_reply(
                    what, lambda: client.acquire_token_by_refresh_token(refresh_token, scopes=scopes), wait
                )
            except (requests.RequestException, MsalServiceError) as exc:
                raise unavailable(what, exc, self._throttle.retry_after(app.authority)) from exc

        result = await asyncio.to_thread(call)
        raise_for_error(result, what)
        return token_result(result, what)

    async def acquire_for_client(self, app: MicrosoftApp, scopes: list[str]) -> TokenResult:
        """App-only (client credentials). token-service decides when a new token is needed,
        so MSAL's own cache of app tokens is emptied first: a forced refresh must reach Entra."""

        def call() -> dict[str, Any]:
            client, wait = self._app(app), self._wait(app)
            cache = client.token_cache
            # A list first: search() iterates the cache's dict, which remove_at() changes.
            for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)
            assert isinstance(client, msal.ConfidentialClientApplication)
            try:
                return read_reply(
                    "app-only token request", lambda: client.acquire_token_for_client(scopes=scopes), wait
                )
            except (requests.RequestException, MsalServiceError) as exc:
                raise unavailable("app-only token", exc, self._throttle.retry_after(app.authority)) from exc

        result = await asyncio.to_thread(call)
        raise_for_error(result, "app-only token request")
        return token_result(result, "app-only token request")


def token_result(result: dict[str, Any], what: str) -> TokenResult:
    try:
        return TokenResult(
            access_token=str(result["access_token"]),
            expires_in=float(result.get("expires_in", 3600)),
            refresh_token=result.get("refresh_token"),
            id_token_claims=dict(result.get("id_token_claims") or {}),
            scopes=tuple(str(result.get("scope", "")).split()),
        )
    except (TypeError, ValueError) as exc:  # "expires_in": "soon", "id_token_claims": [1]
        raise UnreadableReply(what) from exc
