"""Google OAuth emulator, as `docs/providers.md` describes the real one.

Authorize at `/o/oauth2/v2/auth`, token at `/token` (authorization_code with PKCE,
refresh_token without rotation), `/tokeninfo` for the SMTP emulator, `/revoke`, keys at
`/oauth2/v3/certs`. A refresh token comes only with `access_type=offline` on first consent
or with `prompt=consent`. Dead grants answer `invalid_grant` "Token has been expired or
revoked."; an app in testing mode has refresh tokens that die after 7 days. The device flow
refuses the Gmail scope with `invalid_scope`. Service accounts with domain-wide delegation
sign a JWT and redeem it at `/token` (`urn:ietf:params:oauth:grant-type:jwt-bearer`);
the emulator checks the signature against the account's key, the audience, the lifetime,
the delegated scopes and the Workspace domain of `sub`, with Google's error bodies.

Consent is granular: a user may untick scopes on the consent screen (`/_emulator/consent`
says which, per user), and the token response's `scope` says what was granted. Revoking an access
token revokes the refresh token it came from, as Google's `/revoke` does. Past the limit of
live refresh tokens for one client and user (100; settable per app), the oldest stops working
without notice.

Control API: `/_emulator/...` as for the Microsoft emulator.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from .identity import (
    CallCounter,
    ControlSettings,
    Fault,
    FaultPlan,
    SigningKey,
    apply_settings,
    client_credentials_from,
    control_router,
    form_of,
    json_error,
    now,
    pkce_matches,
    random_token,
)

MAIL_SCOPE = "https://mail.google.com/"
TESTING_REFRESH_LIFETIME_S = 7 * 24 * 3600
IDLE_REFRESH_LIFETIME_S = 183 * 24 * 3600
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 3600


def assertion_audiences(base_url: str) -> list[str]:
    """Google wants its token endpoint as the assertion's audience, and google-auth always
    writes that one, whatever `token_uri` says; the emulator's own URL is accepted too."""
    return ["https://oauth2.googleapis.com/token", f"{base_url}/token"]


UNAUTHORIZED_DELEGATION = {
    "error": "unauthorized_client",
    "error_description": "Client is unauthorized to retrieve access tokens using this method, or client "
    "not authorized for any of the scopes requested.",
}
REFRESH_TOKEN_LIMIT = 100
"""Live refresh tokens per OAuth client and user ("Using OAuth 2.0 to Access Google APIs",
refresh token expiration)."""
EXPIRED_OR_REVOKED = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


@dataclass
class App:
    client_id: str
    client_secret: str | None
    testing_mode: bool = False
    redirect_uris: tuple[str, ...] = ()
    refresh_token_limit: int = REFRESH_TOKEN_LIMIT


@dataclass
class Grant:
    client_id: str
    user: str
    scopes: list[str]
    issued_at: float
    last_used: float
    revoked: bool = False


@dataclass
class AccessToken:
    client_id: str
    user: str
    scopes: list[str]
    expires_at: float
    refresh_token: str | None = None


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    user: str
    challenge: str | None
    method: str | None
    offline: bool
    consent: bool
    nonce: str | None
    expires_at: float
    redeemed: bool = False


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey
    domain: str
    delegated_scopes: set[str]
    """What the Workspace admin console allows this client id (domain-wide delegation)."""


@dataclass
class State:
    apps: dict[str, App] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)  # refresh token → grant
    consented: set[tuple[str, str]] = field(default_factory=set)  # (client, user)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    auth_codes: dict[str, AuthCode] = field(default_factory=dict)
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    issued_access_tokens: list[str] = field(default_factory=list)
    issued_refresh_tokens: list[str] = field(default_factory=list)
    next_sign_in: str | None = None
    unticked_scopes: dict[str, list[str]] = field(default_factory=dict)  # casefolded user → scopes
    access_token_lifetime_s: int = 3599
    faults: FaultPlan = field(default_factory=FaultPlan)
    counter: CallCounter = field(default_factory=CallCounter)


class RegisterApp(BaseModel):
    client_id: str
    client_secret: str | None = None
    testing_mode: bool = False
    redirect_uris: list[str] = []
    refresh_token_limit: int = REFRESH_TOKEN_LIMIT


class CreateServiceAccount(BaseModel):
    client_email: str
    domain: str
    delegated_scopes: list[str] = [MAIL_SCOPE]


class Delegation(BaseModel):
    """What the Workspace admin console's domain-wide delegation page allows a service
    account's client id from now on (an empty list: the client id removed)."""

    client_email: str
    delegated_scopes: list[str]


class AgeRequest(BaseModel):
    user: str
    days: float


class Settings(ControlSettings):
    pass


class Consent(BaseModel):
    """The scopes a user leaves unticked on the consent screen from now on."""

    user: str
    unticked_scopes: list[str]


def create_app(base_url: str, apps: list[App] | None = None) -> FastAPI:
    state = State()
    for app_ in apps or []:
        state.apps[app_.client_id] = app_
    key = SigningKey()
    api = FastAPI(title="Google OAuth emulator", docs_url=None, redoc_url=None)
    api.state.emulator = state

    def fault_response(endpoint: str, grant_type: str | None = None) -> Response | None:
        state.counter.hit(endpoint)
        fault: Fault | None = state.faults.take(grant_type)
        if fault is None:
            return None
        return fault.response(
            {"error": "temporarily_unavailable", "error_description": "Service unavailable"}
        )

    def new_access_token(
        client_id: str, user: str, scopes: list[str], refresh_token: str | None = None
    ) -> str:
        token = random_token("ya29.a0", 60)
        state.access_tokens[token] = AccessToken(
            client_id, user, scopes, now() + state.access_token_lifetime_s, refresh_token
        )
        state.issued_access_tokens.append(token)
        return token

    def id_token(client_id: str, user: str, nonce: str | None) -> str:
        issued = int(now())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "azp": client_id,
            "aud": client_id,
            "sub": str(abs(hash(user)) % 10**21),
            "email": user,
            "email_verified": True,
            "iat": issued,
            "exp": issued + 3600,
        }
        if nonce:
            claims["nonce"] = nonce
        return key.sign(claims)

    def retire_oldest(app_: App, user: str) -> None:
        """Google keeps a limited number of live refresh tokens per client and user; past it,
        the oldest stops working (dicts keep insertion order: oldest first)."""
        live = [
            g
            for g in state.grants.values()
            if g.client_id == app_.client_id and g.user == user and not g.revoked
        ]
        for grant in live[: max(0, len(live) - app_.refresh_token_limit)]:
            grant.revoked = True

    def grant_dead(grant: Grant) -> bool:
        app_ = state.apps.get(grant.client_id)
        if grant.revoked:
            return True
        if app_ is not None and app_.testing_mode and now() - grant.issued_at > TESTING_REFRESH_LIFETIME_S:
            return True
        return now() - grant.last_used > IDLE_REFRESH_LIFETIME_S

    @api.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": "https://accounts.google.com",
            "authorization_endpoint": f"{base_url}/o/oauth2/v2/auth",
            "device_authorization_endpoint": f"{base_url}/device/code",
            "token_endpoint": f"{base_url}/token",
            "revocation_endpoint": f"{base_url}/revoke",
            "jwks_uri": f"{base_url}/oauth2/v3/certs",
            "code_challenge_methods_supported": ["plain", "S256"],
        }

    @api.get("/oauth2/v3/certs")
    async def certs() -> dict[str, Any]:
        return key.jwks()

    @api.get("/o/oauth2/v2/auth")
    async def authorize(request: Request) -> Response:
        state.counter.hit("authorize")
        query = dict(request.query_params)
        client_id = query.get("client_id", "")
        if client_id not in state.apps:
            return HTMLResponse("Error 401: invalid_client. The OAuth client was not found.", 401)
        if query.get("redirect_uri", "") not in state.apps[client_id].redirect_uris:
            return HTMLResponse("Error 400: redirect_uri_mismatch", 400)
        user = state.next_sign_in or query.get("login_hint_user") or query.get("login_hint")
        if user is None:
            hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in query.items())
            return HTMLResponse(
                f"<html><body><form method='get'>{hidden}<label>Choose an account "
                "<input name='login_hint_user'></label><button>Continue</button></form></body></html>"
            )
        code = "4/0A" + secrets.token_urlsafe(40)
        # Granular consent: the user may untick any scope but the sign-in ones.
        unticked = state.unticked_scopes.get(user.casefold(), [])
        granted = [s for s in query.get("scope", "").split() if s not in unticked]
        state.auth_codes[code] = AuthCode(
            client_id=client_id,
            redirect_uri=query.get("redirect_uri", ""),
            scopes=granted,
            user=user,
            challenge=query.get("code_challenge"),
            method=query.get("code_challenge_method"),
            offline=query.get("access_type") == "offline",
            consent="consent" in query.get("prompt", "").split(),
            nonce=query.get("nonce"),
            expires_at=now() + 600,
        )
        params = {"code": code, "state": query.get("state", ""), "scope": " ".join(granted)}
        return RedirectResponse(f"{query.get('redirect_uri')}?{urlencode(params)}", status_code=302)

    def jwt_bearer(assertion: str) -> Response:
        """A service account's signed assertion, as Google's token endpoint checks it."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return json_error(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        account = state.service_accounts.get(str(unverified.get("iss", "")))
        if account is None or header.get("kid") != account.key_id:
            return json_error(
                400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
            )
        try:
            claims = jwt.decode(
                assertion, account.public_key, algorithms=["RS256"], audience=assertion_audiences(base_url)
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAudienceError):
            return json_error(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        except jwt.PyJWTError:
            claims = {}
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_ASSERTION_LIFETIME_S:
            return json_error(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and "
                    "in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
                },
            )
        scopes = str(claims.get("scope", "")).split()
        subject = claims.get("sub")
        if subject:
            if not scopes or not set(scopes) <= account.delegated_scopes:
                return json_error(401, UNAUTHORIZED_DELEGATION)
            if not str(subject).lower().endswith("@" + account.domain.lower()):
                return json_error(
                    400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
                )
        user = str(subject or account.client_email)
        return JSONResponse(
            {
                "access_token": new_access_token(account.client_id, user, scopes),
                "expires_in": state.access_token_lifetime_s,
                "token_type": "Bearer",
            }
        )

    @api.post("/token")
    async def token(request: Request) -> Response:
        form = await form_of(request)
        if (failed := fault_response("token", form.get("grant_type"))) is not None:
            return failed
        if form.get("grant_type") == JWT_BEARER_GRANT:
            return jwt_bearer(form.get("assertion", ""))
        client_id, client_secret = client_credentials_from(request, form)
        app_ = state.apps.get(client_id or "")
        if app_ is None:
            return json_error(
                401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
            )
        if app_.client_secret is not None and not secrets.compare_digest(
            client_secret or "", app_.client_secret
        ):
            return json_error(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = state.auth_codes.get(form.get("code", ""))
            if code is None or code.redeemed or now() > code.expires_at or code.client_id != app_.client_id:
                return json_error(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            if form.get("redirect_uri") != code.redirect_uri:
                return json_error(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
            if not pkce_matches(form.get("code_verifier"), code.challenge, code.method):
                return json_error(
                    400, {"error": "invalid_grant", "error_description": "Missing code verifier."}
                )
            code.redeemed = True
            first_consent = (app_.client_id, code.user) not in state.consented
            refresh_token = None
            if code.offline and (first_consent or code.consent):
                refresh_token = "1//0" + secrets.token_urlsafe(60)
            body: dict[str, Any] = {
                "access_token": new_access_token(app_.client_id, code.user, code.scopes, refresh_token),
                "expires_in": state.access_token_lifetime_s,
                "scope": " ".join(code.scopes),
                "token_type": "Bearer",
            }
            if "openid" in code.scopes or "email" in code.scopes:
                body["id_token"] = id_token(app_.client_id, code.user, code.nonce)
            if refresh_token is not None:
                state.grants[refresh_token] = Grant(app_.client_id, code.user, code.scopes, now(), now())
                retire_oldest(app_, code.user)
                state.issued_refresh_tokens.append(refresh_token)
                state.consented.add((app_.client_id, code.user))
                body["refresh_token"] = refresh_token
                body["refresh_token_expires_in"] = TESTING_REFRESH_LIFETIME_S if app_.testing_mode else None
                if body["refresh_token_expires_in"] is None:
                    del body["refresh_token_expires_in"]
            return JSONResponse(body)
        if grant_type == "refresh_token":
            grant = state.grants.get(form.get("refresh_token", ""))
            if grant is None or grant.client_id != app_.client_id or grant_dead(grant):
                return json_error(400, EXPIRED_OR_REVOKED)
            grant.last_used = now()
            # No rotation: Google answers without a refresh token; the client keeps its own.
            return JSONResponse(
                {
                    "access_token": new_access_token(
                        app_.client_id, grant.user, grant.scopes, form.get("refresh_token")
                    ),
                    "expires_in": state.access_token_lifetime_s,
                    "scope": " ".join(grant.scopes),
                    "token_type": "Bearer",
                }
            )
        return json_error(
            400,
            {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type: " + str(grant_type),
            },
        )

    @api.post("/device/code")
    async def device_code(request: Request) -> Response:
        state.counter.hit("device_code")
        form = await form_of(request)
        scopes = form.get("scope", "").split()
        if MAIL_SCOPE in scopes:
            return json_error(
                400,
                {"error": "invalid_scope", "error_description": "Invalid device flow scope: " + MAIL_SCOPE},
            )
        return JSONResponse(
            {
                "device_code": random_token("AH-1Ng", 40),
                "user_code": "GQVQ-JKEC",
                "verification_url": "https://www.google.com/device",
                "expires_in": 1800,
                "interval": 5,
            }
        )

    @api.get("/tokeninfo")
    async def tokeninfo(access_token: str = "") -> Response:
        state.counter.hit("tokeninfo")
        record = state.access_tokens.get(access_token)
        if record is None or now() > record.expires_at:
            return json_error(400, {"error": "invalid_token", "error_description": "Invalid Value"})
        return JSONResponse(
            {
                "azp": record.client_id,
                "aud": record.client_id,
                "scope": " ".join(record.scopes),
                "exp": str(int(record.expires_at)),
                "expires_in": str(int(record.expires_at - now())),
                "email": record.user,
                "email_verified": "true",
                "access_type": "offline",
            }
        )

    @api.post("/revoke")
    async def revoke_endpoint(request: Request) -> Response:
        state.counter.hit("revoke")
        form = await form_of(request)
        token_value = form.get("token") or request.query_params.get("token", "")
        grant = state.grants.get(token_value)
        if grant is not None:
            grant.revoked = True
            return JSONResponse({})
        access = state.access_tokens.pop(token_value, None)
        if access is not None:
            # Google revokes the whole grant: the refresh token the access token came from too.
            if access.refresh_token is not None and access.refresh_token in state.grants:
                state.grants[access.refresh_token].revoked = True
            return JSONResponse({})
        return json_error(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})

    # --- control API ------------------------------------------------------------------

    @api.post("/_emulator/apps")
    async def register_app(body: RegisterApp) -> dict[str, str]:
        state.apps[body.client_id] = App(
            body.client_id,
            body.client_secret,
            body.testing_mode,
            tuple(body.redirect_uris),
            body.refresh_token_limit,
        )
        return {"client_id": body.client_id}

    @api.post("/_emulator/service-accounts")
    async def create_service_account(body: CreateServiceAccount) -> dict[str, Any]:
        """A service account with domain-wide delegation; answers with its JSON key file."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        client_id = str(secrets.randbelow(10**21))
        state.service_accounts[body.client_email] = ServiceAccount(
            body.client_email,
            client_id,
            key_id,
            private_key.public_key(),
            body.domain,
            set(body.delegated_scopes),
        )
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": "fleetmail-emulator",
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": body.client_email,
            "client_id": client_id,
            "auth_uri": f"{base_url}/o/oauth2/v2/auth",
            "token_uri": f"{base_url}/token",
            "auth_provider_x509_cert_url": f"{base_url}/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    @api.post("/_emulator/service-accounts/delegation")
    async def delegation(body: Delegation) -> Response:
        account = state.service_accounts.get(body.client_email)
        if account is None:
            return json_error(404, {"error": "no such service account"})
        account.delegated_scopes = set(body.delegated_scopes)
        return JSONResponse({"delegated_scopes": sorted(account.delegated_scopes)})

    @api.post("/_emulator/grants/age")
    async def age(body: AgeRequest) -> dict[str, int]:
        aged = 0
        for grant in state.grants.values():
            if grant.user == body.user:
                grant.issued_at -= body.days * 24 * 3600
                grant.last_used -= body.days * 24 * 3600
                aged += 1
        return {"aged": aged}

    @api.post("/_emulator/consent")
    async def consent(body: Consent) -> dict[str, list[str]]:
        state.unticked_scopes[body.user.casefold()] = body.unticked_scopes
        return {"unticked_scopes": body.unticked_scopes}

    @api.post("/_emulator/settings")
    async def settings(body: Settings) -> dict[str, bool]:
        apply_settings(state, body)
        return {"ok": True}

    api.include_router(control_router(state))
    return api
