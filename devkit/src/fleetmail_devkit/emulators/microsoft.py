"""Microsoft identity platform (Entra ID) emulator, as `docs/providers.md` describes the real one.

Endpoints under `/<tenant>/oauth2/v2.0/` (authorize, token, devicecode), discovery at
`/<tenant>/v2.0/.well-known/openid-configuration`, keys at `/<tenant>/discovery/v2.0/keys`.
Refresh tokens rotate on every use (the old one stays valid), die after 90 idle days
(AADSTS700082) or when revoked (AADSTS50173). Errors have Microsoft's body shape, with
`suberror` where Entra sends one; any code of `ERRORS` can be injected through the fault plan.

Users have a UPN (what `preferred_username` says) and a primary SMTP address, which differ
for many real users; the id token carries `email` only when the app registration asks for
that optional claim. An id token comes only with `openid`, a refresh token only with
`offline_access`, as Entra issues them.

Control API (tests and the demo): `/_emulator/...` — register apps, approve or decline a
device code as a user, set who signs in at `authorize`, revoke or age a user's grant,
inject 429/5xx answers or error bodies, read call counts, add users, expire an app's secret,
grant admin consent for application permissions in a directory.

Scopes decide the token: its audience is the resource they name (Microsoft Graph's token is
not Exchange's), a malformed scope or a permission the resource lacks is `invalid_scope`
(AADSTS70011). App-only (client credentials, `/.default`) needs a directory, not an alias
(AADSTS50059), and carries `roles` only after an administrator of that directory consented.
An authorization code is redeemed in the directory it was issued in (AADSTS700005).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from .entra import (
    APP_ROLES,
    DIRECTORY_ALIASES,
    GRAPH,
    OIDC_SCOPES,
    RESOURCES,
    SMTP_AUDIENCE,
    audience_of,
    directory_id,
    error_body,
    resource_of,
)
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

REFRESH_TOKEN_LIFETIME_S = 90 * 24 * 3600
DEVICE_CODE_LIFETIME_S = 900
DEVICE_CODE_INTERVAL_S = 5
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class App:
    client_id: str
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = ()
    optional_claims: tuple[str, ...] = ()
    """The id token's optional claims the registration configures (`email`, `xms_edov`)."""
    secret_expired: bool = False


@dataclass(frozen=True)
class User:
    """A directory user: signs in with the UPN; mail goes to the primary SMTP address."""

    upn: str
    primary_smtp: str
    email_domain_verified: bool = True


@dataclass
class Grant:
    """One user's consent to one app: every refresh token issued from it shares its fate."""

    grant_id: str
    client_id: str
    tenant: str
    user: str
    scopes: list[str]
    revoked: bool = False


@dataclass
class RefreshToken:
    grant_id: str
    issued_at: float


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    tenant: str
    scopes: list[str]
    expires_at: float
    last_poll: float = 0.0
    approved_user: str | None = None
    declined: bool = False
    redeemed: bool = False


@dataclass
class AuthCode:
    client_id: str
    tenant: str
    redirect_uri: str
    scopes: list[str]
    user: str
    challenge: str | None
    method: str | None
    nonce: str | None
    expires_at: float
    redeemed: bool = False


@dataclass
class State:
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)  # casefolded UPN and SMTP address → user
    grants: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    device_codes: dict[str, DeviceCode] = field(default_factory=dict)
    auth_codes: dict[str, AuthCode] = field(default_factory=dict)
    issued_access_tokens: list[str] = field(default_factory=list)
    issued_refresh_tokens: list[str] = field(default_factory=list)
    next_sign_in: str | None = None
    access_token_lifetime_s: int = 3600
    slow_down: bool = False
    device_code_interval_s: int = DEVICE_CODE_INTERVAL_S
    faults: FaultPlan = field(default_factory=FaultPlan)
    counter: CallCounter = field(default_factory=CallCounter)
    admin_consents: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(client id, directory id) → the application permissions an administrator consented to."""


class RegisterApp(BaseModel):
    client_id: str
    client_secret: str | None = None
    redirect_uris: list[str] = []
    optional_claims: list[str] = []
    secret_expired: bool = False


class AddUser(BaseModel):
    upn: str
    primary_smtp: str
    email_domain_verified: bool = True


class Approve(BaseModel):
    user_code: str
    user: str


class Decline(BaseModel):
    """Names one device code: to decline it, or to let it expire."""

    user_code: str


class AdminConsent(BaseModel):
    """An administrator of `directory` grants the app its application permissions."""

    client_id: str
    directory: str
    roles: list[str] = ["SMTP.SendAsApp"]


class AgeRequest(BaseModel):
    user: str
    days: float = 91


class Settings(ControlSettings):
    slow_down: bool | None = None
    device_code_interval_s: int | None = None
    """Microsoft's is 5 s; a test may shorten it so sign-ins do not wait."""


def _scopes(raw: str) -> list[str]:
    return [s for s in raw.split() if s]


def _resource_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s not in ("openid", "profile", "offline_access", "email")]


def create_app(base_url: str, apps: list[App] | None = None) -> FastAPI:
    """The emulator as an ASGI app; `base_url` is how clients reach it (https://host:port)."""
    state = State()
    for app_ in apps or []:
        state.apps[app_.client_id] = app_
    key = SigningKey()
    api = FastAPI(title="Microsoft identity platform emulator", docs_url=None, redoc_url=None)
    api.state.emulator = state

    def issuer(tenant: str) -> str:
        return f"{base_url}/{tenant}/v2.0"

    def tenant_id(tenant: str, user: str | None = None) -> str:
        """The directory (`tid`) a sign-in through `/<tenant>/` lands in, as Entra says it: a
        directory named by its id is that id; one named by domain has an id of its own; the
        aliases `organizations` and `common` sign a work account in to its home directory
        (here: one per mail domain), `consumers` to the Microsoft account directory."""
        if tenant in ("organizations", "common") and user is not None:
            tenant = user.rpartition("@")[2].lower()
        return directory_id(tenant)

    def fault_response(
        endpoint: str, grant_type: str | None = None, device_code: str | None = None
    ) -> Response | None:
        state.counter.hit(endpoint)
        polled = state.device_codes.get(device_code or "")
        fault: Fault | None = state.faults.take(grant_type, polled.user_code if polled else None)
        if fault is None:
            return None
        if fault.error_code is not None:
            body = error_body(fault.error_code)
            if fault.error is not None:
                body["error"] = fault.error  # e.g. 50076 as `interaction_required`
            if fault.claims is not None:
                body["claims"] = fault.claims
            headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else None
            return json_error(401 if body["error"] == "invalid_client" else 400, body, headers)
        body = error_body(90014)
        body["error"] = "temporarily_unavailable"
        return fault.response(body)

    def user_of(name: str) -> User:
        """The directory user who signs in as `name` (UPN or primary SMTP address); a name
        the control API never added is a user whose UPN is their address."""
        return state.users.get(name.casefold()) or User(name, name)

    def issue_tokens(grant: Grant, client_id: str, nonce: str | None = None) -> dict[str, Any]:
        issued = int(now())
        user = user_of(grant.user)
        tid = tenant_id(grant.tenant, user.upn)
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user/{user.upn.casefold()}"))
        resource = _resource_scopes(grant.scopes)
        access_token = key.sign(
            {
                "aud": audience_of(grant.scopes),
                "iss": f"https://sts.windows.net/{tid}/",
                "iat": issued,
                "nbf": issued,
                "exp": issued + state.access_token_lifetime_s,
                "appid": client_id,
                "scp": " ".join(s.rsplit("/", 1)[-1] for s in resource),
                "upn": user.upn,
                "unique_name": user.upn,
                "oid": oid,
                "tid": tid,
                "jti": secrets.token_hex(8),
            }
        )
        state.issued_access_tokens.append(access_token)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(resource),
            "expires_in": state.access_token_lifetime_s,
            "ext_expires_in": state.access_token_lifetime_s,
            "access_token": access_token,
        }
        if "offline_access" in grant.scopes:
            refresh_token = random_token("1.AQ", 48)
            state.refresh_tokens[refresh_token] = RefreshToken(grant.grant_id, now())
            state.issued_refresh_tokens.append(refresh_token)
            body["refresh_token"] = refresh_token
        if "openid" not in grant.scopes:
            return body
        optional = state.apps[client_id].optional_claims
        id_claims: dict[str, Any] = {
            "aud": client_id,
            "iss": issuer(grant.tenant),
            "iat": issued,
            "nbf": issued,
            "exp": issued + 3600,
            "name": user.upn.split("@")[0],
            "preferred_username": user.upn,
            "oid": oid,
            "sub": secrets.token_hex(16),
            "tid": tid,
            "ver": "2.0",
        }
        if "email" in optional:
            id_claims["email"] = user.primary_smtp
        if "xms_edov" in optional:
            id_claims["xms_edov"] = user.email_domain_verified
        if nonce:
            id_claims["nonce"] = nonce
        body["id_token"] = key.sign(id_claims)
        body["client_info"] = (
            base64.urlsafe_b64encode(json.dumps({"uid": oid, "utid": tid}).encode()).rstrip(b"=").decode()
        )
        return body

    def check_scopes(scopes: list[str], tenant: str) -> Response | None:
        """Entra's answers to scopes it cannot issue: a malformed scope or a permission its
        resource does not have is `invalid_scope` (70011), an unknown resource
        `invalid_resource` (500011), two resources in one request 70011."""
        resources = set()
        for scope in scopes:
            if scope in OIDC_SCOPES:
                continue
            found = resource_of(scope)
            if found is None:
                return json_error(400, error_body(70011, scope=scope))
            resource, permission = found
            if resource not in RESOURCES:
                return json_error(400, error_body(500011, resource=resource, tenant=tenant))
            if permission not in RESOURCES[resource]:
                return json_error(400, error_body(70011, scope=scope))
            resources.add(GRAPH if resource == GRAPH else SMTP_AUDIENCE)
        if len(resources) > 1:
            return json_error(400, error_body(70011, scope=" ".join(scopes)))
        return None

    def check_app(client_id: str | None, tenant: str) -> Response | None:
        if not client_id:
            return json_error(400, error_body(900144, parameter="client_id"))
        if client_id not in state.apps:
            return json_error(400, error_body(700016, client_id=client_id, tenant=tenant))
        return None

    @api.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def discovery(tenant: str) -> dict[str, Any]:
        state.counter.hit("discovery")
        base = f"{base_url}/{tenant}"
        return {
            "issuer": issuer(tenant),
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
        }

    @api.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> dict[str, Any]:
        state.counter.hit("keys")
        return key.jwks()

    @api.post("/{tenant}/oauth2/v2.0/devicecode")
    async def devicecode(tenant: str, request: Request) -> Response:
        if (failed := fault_response("devicecode", "devicecode")) is not None:
            return failed
        form = await form_of(request)
        if (bad := check_app(form.get("client_id"), tenant)) is not None:
            return bad
        scopes = _scopes(form.get("scope", ""))
        if (bad := check_scopes(scopes, tenant)) is not None:
            return bad
        code = DeviceCode(
            device_code=random_token("DAQABAAEAAA", 48),
            user_code="".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9)),
            client_id=form["client_id"],
            tenant=tenant,
            scopes=scopes,
            expires_at=now() + DEVICE_CODE_LIFETIME_S,
        )
        state.device_codes[code.device_code] = code
        verification_uri = f"{base_url}/devicelogin"
        return JSONResponse(
            {
                "user_code": code.user_code,
                "device_code": code.device_code,
                "verification_uri": verification_uri,
                "expires_in": DEVICE_CODE_LIFETIME_S,
                "interval": state.device_code_interval_s,
                "message": (
                    f"To sign in, use a web browser to open the page {verification_uri} and "
                    f"enter the code {code.user_code} to authenticate."
                ),
            }
        )

    @api.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str, request: Request) -> Response:
        state.counter.hit("authorize")
        query = dict(request.query_params)
        if (bad := check_app(query.get("client_id"), tenant)) is not None:
            return bad
        # Who signs in: the control API's scripted user, else the login hint (the emulator
        # has no passwords), else whoever a person types into the form.
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in state.apps[query["client_id"]].redirect_uris:
            body = error_body(50011, redirect_uri=redirect_uri, client_id=query["client_id"])
            return HTMLResponse(
                f"<html><body><p>{html.escape(body['error_description'])}</p></body></html>", 400
            )
        user = state.next_sign_in or query.get("login_hint_user") or query.get("login_hint")
        if user is None:
            # No scripted sign-in: a minimal sign-in form, as a person would see it.
            hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in query.items())
            return HTMLResponse(
                f"<html><body><form method='get'>{hidden}<label>Sign in as "
                "<input name='login_hint_user'></label><button>Sign in</button></form>"
                "</body></html>"
            )
        code = random_token("0.AQ", 48)
        state.auth_codes[code] = AuthCode(
            client_id=query["client_id"],
            tenant=tenant,
            redirect_uri=query.get("redirect_uri", ""),
            scopes=_scopes(query.get("scope", "")),
            user=user,
            challenge=query.get("code_challenge"),
            method=query.get("code_challenge_method"),
            nonce=query.get("nonce"),
            expires_at=now() + 600,
        )
        params = {"code": code, "state": query.get("state", ""), "session_state": secrets.token_hex(8)}
        if query.get("response_mode") == "form_post":
            # What the browser gets: a form that posts the code to the redirect URI at once.
            fields = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v)}"/>' for k, v in params.items()
            )
            return HTMLResponse(
                f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                f'action="{html.escape(query.get("redirect_uri", ""))}">{fields}</form></body></html>'
            )
        return RedirectResponse(f"{query.get('redirect_uri')}?{urlencode(params)}", status_code=302)

    @api.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        form = await form_of(request)
        # Counted per grant type too: tests count refresh redemptions without the polls
        # of device-code sign-ins that other tests left pending.
        state.counter.hit(f"token:{form.get('grant_type', '')}")
        if (failed := fault_response("token", form.get("grant_type"), form.get("device_code"))) is not None:
            return failed
        client_id, client_secret = client_credentials_from(request, form)
        if (bad := check_app(client_id, tenant)) is not None:
            return bad
        assert client_id is not None
        app_ = state.apps[client_id]
        if client_secret is not None or app_.client_secret is not None:
            if app_.client_secret is None or not secrets.compare_digest(
                client_secret or "", app_.client_secret
            ):
                return json_error(401, error_body(7000215))
            if app_.secret_expired:
                return json_error(401, error_body(7000222, client_id=client_id))
        grant_type = form.get("grant_type", "")
        scopes = _scopes(form.get("scope", ""))
        if (bad := check_scopes(scopes, tenant)) is not None:
            return bad
        if grant_type == DEVICE_CODE_GRANT:
            return redeem_device_code(form, client_id)
        if grant_type == "authorization_code":
            return redeem_auth_code(form, client_id, tenant)
        if grant_type == "refresh_token":
            return redeem_refresh_token(form, client_id, scopes)
        if grant_type == "client_credentials":
            if app_.client_secret is None:
                return json_error(401, error_body(7000215))
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                return json_error(400, error_body(1002012, scope=" ".join(scopes)))
            return client_credentials(client_id, tenant, scopes[0])
        return json_error(400, error_body(9002313))

    def client_credentials(client_id: str, tenant: str, scope: str) -> Response:
        """An app-only token for one directory: none for an alias (which directory would it
        act in?), and with the application permissions of its resource that an administrator
        of that directory consented to, no others (no `roles` at all before consent)."""
        if tenant in DIRECTORY_ALIASES:
            return json_error(400, error_body(50059))
        issued, tid = int(now()), tenant_id(tenant)
        audience = audience_of([scope])
        roles = sorted(
            state.admin_consents.get((client_id, tid), set()) & APP_ROLES.get(audience, frozenset())
        )
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": issued,
            "exp": issued + state.access_token_lifetime_s,
            "appid": client_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"service-principal/{client_id}")),
            "tid": tid,
            "jti": secrets.token_hex(8),
        }
        if roles:
            claims["roles"] = roles
        access_token = key.sign(claims)
        state.issued_access_tokens.append(access_token)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": state.access_token_lifetime_s,
                "ext_expires_in": state.access_token_lifetime_s,
                "access_token": access_token,
            }
        )

    def redeem_device_code(form: dict[str, str], client_id: str) -> Response:
        if not form.get("device_code"):
            return json_error(400, error_body(9002313))
        code = state.device_codes.get(form["device_code"])
        if code is None or code.client_id != client_id:
            # A device code the server never issued (to this app): the device-code flow's own
            # polling error, not a malformed request.
            body = error_body(70000)
            body["error"] = "bad_verification_code"
            return json_error(400, body)
        if code.redeemed:
            return json_error(400, error_body(90120))
        if now() > code.expires_at:
            return json_error(400, error_body(70019))
        if code.declined:
            return json_error(400, error_body(500121))
        if code.approved_user is None:
            too_fast = now() - code.last_poll < state.device_code_interval_s
            code.last_poll = now()
            if state.slow_down and too_fast:
                body = error_body(70016)
                body["error"] = "slow_down"
                return json_error(400, body)
            return json_error(400, error_body(70016))
        code.redeemed = True
        grant = Grant(uuid.uuid4().hex, client_id, code.tenant, code.approved_user, code.scopes)
        state.grants[grant.grant_id] = grant
        return JSONResponse(issue_tokens(grant, client_id))

    def redeem_auth_code(form: dict[str, str], client_id: str, tenant: str) -> Response:
        code = state.auth_codes.get(form.get("code", ""))
        if code is None or code.client_id != client_id or now() > code.expires_at:
            return json_error(400, error_body(70008))
        if tenant not in DIRECTORY_ALIASES and tenant_id(tenant) != tenant_id(code.tenant, code.user):
            # A code is good in the directory it was issued in (an alias: the user's own).
            return json_error(400, error_body(700005))
        if code.redeemed:
            return json_error(400, error_body(54005))
        if form.get("redirect_uri") != code.redirect_uri:
            return json_error(400, error_body(9002313))
        if not pkce_matches(form.get("code_verifier"), code.challenge, code.method):
            return json_error(400, error_body(50148))
        code.redeemed = True
        grant = Grant(uuid.uuid4().hex, client_id, code.tenant, code.user, code.scopes)
        state.grants[grant.grant_id] = grant
        return JSONResponse(issue_tokens(grant, client_id, code.nonce))

    def redeem_refresh_token(form: dict[str, str], client_id: str, scopes: list[str]) -> Response:
        record = state.refresh_tokens.get(form.get("refresh_token", ""))
        if record is None:
            # An unknown or malformed refresh token is a bad grant, not a bad request.
            body = error_body(9002313)
            body["error"] = "invalid_grant"
            return json_error(400, body)
        grant = state.grants[record.grant_id]
        if grant.client_id != client_id:
            return json_error(400, error_body(70000))
        if grant.revoked:
            return json_error(400, error_body(50173))
        if now() - record.issued_at > REFRESH_TOKEN_LIFETIME_S:
            issued = dt.datetime.fromtimestamp(record.issued_at, dt.UTC).isoformat()
            return json_error(400, error_body(700082, issued=issued))
        if scopes and not set(_resource_scopes(scopes)) <= set(_resource_scopes(grant.scopes)):
            return json_error(400, error_body(70011, scope=" ".join(scopes)))
        # Rotation: a new refresh token on every use; the old one is not revoked.
        return JSONResponse(issue_tokens(grant, client_id))

    # --- control API ------------------------------------------------------------------

    @api.post("/_emulator/apps")
    async def register_app(body: RegisterApp) -> dict[str, str]:
        state.apps[body.client_id] = App(
            body.client_id,
            body.client_secret,
            tuple(body.redirect_uris),
            tuple(body.optional_claims),
            body.secret_expired,
        )
        return {"client_id": body.client_id}

    @api.post("/_emulator/users")
    async def add_user(body: AddUser) -> dict[str, str]:
        """A user who signs in with `upn` and receives mail at `primary_smtp`."""
        user = User(body.upn, body.primary_smtp, body.email_domain_verified)
        state.users[body.upn.casefold()] = user
        state.users[body.primary_smtp.casefold()] = user
        return {"upn": user.upn, "primary_smtp": user.primary_smtp}

    @api.post("/_emulator/admin-consent")
    async def admin_consent(body: AdminConsent) -> dict[str, list[str]]:
        """What an administrator's "Grant admin consent" does for one directory."""
        granted = state.admin_consents.setdefault((body.client_id, directory_id(body.directory)), set())
        granted.update(body.roles)
        return {"roles": sorted(granted)}

    @api.post("/_emulator/device-codes/approve")
    async def approve(body: Approve) -> Response:
        for code in state.device_codes.values():
            if code.user_code == body.user_code and not code.redeemed:
                code.approved_user = body.user
                return JSONResponse({"approved": True})
        return json_error(404, {"error": "unknown user_code"})

    @api.post("/_emulator/device-codes/decline")
    async def decline(body: Decline) -> Response:
        for code in state.device_codes.values():
            if code.user_code == body.user_code:
                code.declined = True
                return JSONResponse({"declined": True})
        return json_error(404, {"error": "unknown user_code"})

    @api.post("/_emulator/device-codes/expire")
    async def expire(body: Decline) -> Response:
        """Let a device code run out now, rather than wait its 15 minutes."""
        for code in state.device_codes.values():
            if code.user_code == body.user_code:
                code.expires_at = now() - 1
                return JSONResponse({"expired": True})
        return json_error(404, {"error": "unknown user_code"})

    @api.get("/_emulator/device-codes/pending")
    async def pending() -> list[dict[str, Any]]:
        return [
            {"user_code": c.user_code, "tenant": c.tenant, "scopes": c.scopes}
            for c in state.device_codes.values()
            if c.approved_user is None and not c.declined and now() < c.expires_at
        ]

    @api.post("/_emulator/grants/age")
    async def age(body: AgeRequest) -> dict[str, int]:
        aged = 0
        grant_ids = {g.grant_id for g in state.grants.values() if g.user == body.user}
        for record in state.refresh_tokens.values():
            if record.grant_id in grant_ids:
                record.issued_at -= body.days * 24 * 3600
                aged += 1
        return {"aged": aged}

    @api.post("/_emulator/settings")
    async def settings(body: Settings) -> dict[str, bool]:
        apply_settings(state, body)
        return {"ok": True}

    api.include_router(control_router(state))
    return api
