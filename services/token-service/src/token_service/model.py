"""The values token-service's use cases and ports exchange. No I/O, no behaviour beyond views.

Every value that holds a token keeps it out of `repr`, so no log line or traceback shows one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    GrantStatus,
    GrantView,
    Principal,
    Provider,
    TokenResource,
)

from .domain import grant_id


@dataclass(frozen=True)
class StoredGrant:
    """One grant as the grant store holds it, tokens opened."""

    principal: Principal
    provider: Provider
    status: GrantStatus
    scopes: tuple[str, ...]
    refresh_token: str | None = field(repr=False)
    """None for an app-only grant, which has no refresh token."""
    version: int
    flow: AcquisitionFlow
    authority: str | None
    client_id: str | None
    acquired_at: datetime
    last_refreshed_at: datetime | None
    last_used_at: datetime | None
    predicted_death_at: datetime | None
    access_token: str | None = field(default=None, repr=False)
    access_issued_at: datetime | None = None
    access_expires_at: datetime | None = None
    access_resource: TokenResource = TokenResource.SMTP
    """What the stored access token is for (one at a time: the last one asked for)."""
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    expiring_announced_at: datetime | None = None
    status_detail: str | None = None
    """Why the grant needs a new sign-in, when it does (shown with its status)."""

    def view(self) -> GrantView:
        return GrantView(
            principal=self.principal,
            provider=self.provider,
            status=self.status,
            flow=self.flow,
            scopes=self.scopes,
            acquired_at=self.acquired_at,
            last_refreshed_at=self.last_refreshed_at,
            last_used_at=self.last_used_at,
            predicted_death_at=self.predicted_death_at,
            status_detail=self.status_detail if self.status is not GrantStatus.ACTIVE else None,
        )

    def __repr__(self) -> str:
        return f"StoredGrant({grant_id(self.principal)}, {self.status}, v{self.version})"


@dataclass(frozen=True)
class IssuedToken:
    """What a redemption produced, ready to be stored."""

    access_token: str
    issued_at: datetime
    expires_at: datetime
    refresh_token: str | None
    resource: TokenResource = TokenResource.SMTP

    def __repr__(self) -> str:
        return f"IssuedToken({self.resource}, expires_at={self.expires_at.isoformat()})"


@dataclass(frozen=True)
class TokenResult:
    """A token endpoint's answer, whichever provider gave it."""

    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(repr=False)
    id_token_claims: dict[str, Any]
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Redeemed:
    """A token that starts a grant, and the app it was issued to (stored with the grant)."""

    result: TokenResult
    authority: str | None
    client_id: str | None


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where the browser goes to sign in, the `state` its answer comes back with, and what
    must be kept (server side, sealed) until then: the PKCE verifier or MSAL's flow."""

    authorization_url: str
    state: str
    flow: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ClaimedFlow:
    acquisition_id: str
    principal: Principal
    provider: Provider
    flow: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        return f"ClaimedFlow({self.acquisition_id})"


@dataclass(frozen=True)
class CachedToken:
    """An access token this replica may hand out until the refresh margin says otherwise."""

    access_token: str = field(repr=False)
    expires_at: datetime
    issued_at: datetime | None = None
    provider: Provider = Provider.MICROSOFT
    address: str | None = None
    """The mailbox the token is for (an administrator grant keeps its id when the tenant's
    administrator address changes: the token must not then be handed out for the new one)."""
    resource: TokenResource = TokenResource.SMTP

    def serves(self, resource: TokenResource) -> bool:
        """Whether the token may be handed out for `resource`: a Microsoft token has one
        audience; a Google token serves every scope of its grant."""
        return self.provider is Provider.GOOGLE or self.resource is resource

    @classmethod
    def of(cls, grant: StoredGrant) -> CachedToken | None:
        if grant.access_token is None or grant.access_expires_at is None:
            return None
        return cls(
            grant.access_token,
            grant.access_expires_at,
            grant.access_issued_at,
            grant.provider,
            grant.principal.address,
            grant.access_resource,
        )

    @classmethod
    def issued(cls, issued: IssuedToken, provider: Provider, address: str | None = None) -> CachedToken:
        return cls(
            issued.access_token, issued.expires_at, issued.issued_at, provider, address, issued.resource
        )
