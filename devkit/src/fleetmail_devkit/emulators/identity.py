"""What the two identity-provider emulators share: signing keys, PKCE, fault injection,
counters, and the part of the control API that is the same for both.

Fault injection, counters and settings are driven through each emulator's control API
(`/_emulator/...`), which tests and the demo use; real clients never see it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict


def now() -> float:
    return time.time()


def random_token(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


class SigningKey:
    """An RSA key that signs id_tokens and access tokens, published as a JWKS."""

    def __init__(self) -> None:
        self.kid = secrets.token_hex(8)
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        public.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}


def pkce_matches(verifier: str | None, challenge: str | None, method: str | None) -> bool:
    if challenge is None:
        return verifier is None
    if verifier is None:
        return False
    if (method or "plain") == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
    return secrets.compare_digest(verifier, challenge)


FaultBody = Literal["json", "html", "empty", "truncated", "array"]
"""What a faulted call answers: the provider's own JSON error, or what a proxy or a broken
server in between might send instead (an HTML error page, nothing, cut-off JSON, JSON that
is not an object)."""

NOT_JSON: dict[str, tuple[bytes, str]] = {
    "html": (
        b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
        b"</h1></center><hr><center>corporate-proxy</center></body></html>",
        "text/html",
    ),
    "empty": (b"", "application/json"),
    "truncated": (b'{"access_token": "eyJ0eXAiOiJKV1Qi', "application/json"),
    "array": (b'["access_token", "expires_in"]', "application/json"),
}


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after_s: int | None = None
    grant_type: str | None = None
    """Only token calls of this grant type (`devicecode`: the device authorization endpoint);
    None: every call."""
    body: FaultBody = "json"
    user_code: str | None = None
    """Only the polls of this device-code sign-in; None: any call."""
    error_code: int | None = None
    """A provider error code (AADSTS…) to answer with, in the provider's own body and
    status, instead of a bare 429/5xx."""
    claims: str | None = None
    """A claims challenge to add to that body (Conditional Access asks for more)."""
    error: str | None = None
    """The body's `error` instead of the code's usual one: Entra answers MFA (50076, 50079)
    with `invalid_grant` or with `interaction_required`."""

    def response(self, error_body: dict[str, Any]) -> Response:
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else None
        if self.body == "json":
            return json_error(self.status, error_body, headers)
        content, media_type = NOT_JSON[self.body]
        return Response(content, status_code=self.status, media_type=media_type, headers=headers)


@dataclass
class FaultPlan:
    """Answer the next N calls to a set of endpoints with an error (429, 5xx, a provider error
    body by its code, or anything else with a body that is not the provider's JSON)."""

    faults: list[Fault] = field(default_factory=list)

    def take(self, grant_type: str | None = None, user_code: str | None = None) -> Fault | None:
        self.faults = [f for f in self.faults if f.remaining > 0]
        for fault in self.faults:
            if fault.grant_type in (None, grant_type) and fault.user_code in (None, user_code):
                fault.remaining -= 1
                return fault
        return None


class FaultRequest(BaseModel):
    status: int = 503
    count: int = 1
    retry_after_s: int | None = None
    # A test that means one grant's refresh names its grant type, so that the polls of
    # device-code sign-ins other tests left pending do not take its fault.
    grant_type: str | None = None
    body: FaultBody = "json"
    # The sign-in a device-code poll fault is for, so that no other pending sign-in takes it.
    user_code: str | None = None
    error_code: int | None = None
    claims: str | None = None
    error: str | None = None


class CallCounter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def hit(self, endpoint: str) -> None:
        self.calls[endpoint] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self.calls)


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


def client_credentials_from(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """client_id / client_secret from the form or an HTTP Basic header."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        except ValueError:
            return None, None
    return form.get("client_id"), form.get("client_secret")


def json_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


class UserRequest(BaseModel):
    user: str


class ControlSettings(BaseModel):
    """Settings a test may change at run time; each emulator adds its own. Only the fields a
    request names change."""

    model_config = ConfigDict(extra="forbid")
    access_token_lifetime_s: int | None = None
    next_sign_in: str | None = None


def apply_settings(state: Any, body: BaseModel) -> None:
    for name in body.model_fields_set:
        setattr(state, name, getattr(body, name))


def control_router(state: Any) -> APIRouter:
    """The control endpoints both identity emulators have. `state` has `grants` (values with
    `user` and `revoked`), `faults`, `counter`, `issued_access_tokens` and
    `issued_refresh_tokens`."""
    router = APIRouter(prefix="/_emulator")

    @router.post("/grants/revoke")
    async def revoke(body: UserRequest) -> dict[str, int]:
        revoked = 0
        for grant in state.grants.values():
            if grant.user == body.user and not grant.revoked:
                grant.revoked = True
                revoked += 1
        return {"revoked": revoked}

    @router.post("/faults")
    async def faults(body: FaultRequest) -> dict[str, int]:
        state.faults.faults.append(
            Fault(
                body.status,
                body.count,
                body.retry_after_s,
                body.grant_type,
                body.body,
                body.user_code,
                body.error_code,
                body.claims,
                body.error,
            )
        )
        return {"queued": body.count}

    @router.get("/calls")
    async def calls() -> dict[str, int]:
        snapshot: dict[str, int] = state.counter.snapshot()
        return snapshot

    @router.get("/issued")
    async def issued() -> dict[str, list[str]]:
        """Every token string issued so far, so tests can prove none is stored in clear."""
        return {
            "access_tokens": list(state.issued_access_tokens),
            "refresh_tokens": list(state.issued_refresh_tokens),
        }

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return router
