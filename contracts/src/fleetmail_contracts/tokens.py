"""Token operations (request/reply with token-service) and token events.

Access tokens cross the bus only in `AccessTokenReply`, to mail-service, and are never
printed: their fields are excluded from `repr`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from ._base import Contract, Timestamp
from .streams import TOKEN_EVENT_PREFIX, TOKEN_RPC_PREFIX


class Provider(StrEnum):
    MICROSOFT = "microsoft"
    GOOGLE = "google"


class TokenResource(StrEnum):
    """What an access token is for: its audience. Microsoft issues Graph and SMTP tokens for
    different audiences from one grant; Google one token for all of a grant's scopes."""

    SMTP = "smtp"
    GRAPH = "graph"
    GMAIL_API = "gmail_api"


class PrincipalKind(StrEnum):
    ADMINISTRATOR = "administrator"
    USER = "user"


class GrantStatus(StrEnum):
    ACTIVE = "active"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    REVOKED = "revoked"


class AcquisitionFlow(StrEnum):
    DEVICE_CODE = "device_code"
    AUTHORIZATION_CODE = "authorization_code"
    APP_ONLY = "app_only"


class Principal(Contract):
    tenant_id: str = Field(min_length=1, max_length=64)
    kind: PrincipalKind
    address: str = Field(min_length=3, max_length=320)


# --- request/reply -------------------------------------------------------------------

ACCESS_TOKEN_SUBJECT = f"{TOKEN_RPC_PREFIX}access"
START_ACQUISITION_SUBJECT = f"{TOKEN_RPC_PREFIX}acquisition.start"
ACQUISITION_STATUS_SUBJECT = f"{TOKEN_RPC_PREFIX}acquisition.status"
COMPLETE_AUTHORIZATION_SUBJECT = f"{TOKEN_RPC_PREFIX}acquisition.complete"
GRANT_STATUS_SUBJECT = f"{TOKEN_RPC_PREFIX}grants.status"
DELETE_GRANT_SUBJECT = f"{TOKEN_RPC_PREFIX}grants.delete"
DELETE_USER_GRANTS_SUBJECT = f"{TOKEN_RPC_PREFIX}grants.delete_users"
GRANT_SUMMARY_SUBJECT = f"{TOKEN_RPC_PREFIX}grants.summary"


class AccessTokenRequest(Contract):
    principal: Principal
    force_refresh: bool = Field(
        default=False, description="Set after the SMTP server refused the previous token."
    )
    job_id: str | None = None
    resource: TokenResource = Field(
        default=TokenResource.SMTP, description="The API the token is for (its audience)"
    )


class AccessTokenOutcome(StrEnum):
    GRANTED = "granted"
    NO_GRANT = "no_grant"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    CONFIGURATION_ERROR = "configuration_error"
    """fleetmail or the tenant is set up wrongly (no app registration, an unknown tenant):
    no sign-in helps; an operator or administrator must fix a setting."""


class AccessTokenReply(Contract):
    outcome: AccessTokenOutcome
    access_token: str | None = Field(default=None, repr=False)
    expires_at: Timestamp | None = None
    provider: Provider | None = None
    retry_after_s: float | None = None
    detail: str | None = None


class StartAcquisition(Contract):
    principal: Principal
    flow: AcquisitionFlow = AcquisitionFlow.DEVICE_CODE
    redirect_uri: str | None = None


class AcquisitionState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class AcquisitionStarted(Contract):
    """What the panel shows: the verification URL and code, or the authorization URL."""

    acquisition_id: str
    flow: AcquisitionFlow
    state: AcquisitionState = AcquisitionState.PENDING
    verification_uri: str | None = None
    user_code: str | None = None
    authorization_url: str | None = None
    message: str | None = None
    expires_at: Timestamp
    interval_s: float | None = None
    error: str | None = None


class AcquisitionStatusRequest(Contract):
    acquisition_id: str
    tenant_id: str


class AcquisitionStatus(Contract):
    acquisition_id: str
    state: AcquisitionState
    principal: Principal | None = None
    detail: str | None = None


class CompleteAuthorization(Contract):
    """The query of the OAuth redirect callback, relayed by job-gateway."""

    state: str
    code: str | None = Field(default=None, repr=False)
    error: str | None = None
    error_description: str | None = None


class GrantView(Contract):
    """What an administrator sees of a grant: never the token."""

    principal: Principal
    provider: Provider
    status: GrantStatus
    flow: AcquisitionFlow | None = Field(default=None, description="app_only: no user consent to lapse")
    scopes: tuple[str, ...]
    acquired_at: Timestamp
    last_refreshed_at: Timestamp | None = None
    last_used_at: Timestamp | None = None
    predicted_death_at: Timestamp | None = None
    status_detail: str | None = Field(
        default=None, description="Why the grant needs a new sign-in, when it does"
    )


class GrantStatusRequest(Contract):
    tenant_id: str


class GrantStatusReply(Contract):
    grants: tuple[GrantView, ...]


class GrantSummaryRequest(Contract):
    """The fleet overview's question, for many tenants in one request: each one's
    administrator grants and how many of its users must sign in again."""

    tenant_ids: tuple[str, ...] | None = Field(default=None, description="None: every tenant")


class AdministratorGrantSummary(Contract):
    """An administrator grant as the overview shows it: no token, no scope, no detail."""

    tenant_id: str
    address: str
    status: GrantStatus
    predicted_death_at: Timestamp | None = None


class UsersWaiting(Contract):
    tenant_id: str
    count: int = Field(ge=0, description="User grants that need a new sign-in (re-authorisation or revoked)")


class GrantSummaryReply(Contract):
    administrators: tuple[AdministratorGrantSummary, ...]
    users_waiting: tuple[UsersWaiting, ...] = Field(default=(), description="Only tenants with any")


class DeleteGrant(Contract):
    principal: Principal
    reason: Literal["requested", "user_logged_out", "auto_reset"] = "requested"


class DeleteGrantReply(Contract):
    deleted: bool


class DeleteUserGrants(Contract):
    """[Delete] of Refresh Tokens (User) for every login user of the tenant at once."""

    tenant_id: str = Field(min_length=1, max_length=64)


class DeleteUserGrantsReply(Contract):
    deleted: int


class TokenError(Contract):
    """The reply to any token request that could not be served at all."""

    error: str
    detail: str


# --- events --------------------------------------------------------------------------


class TokenEventBase(Contract):
    event_id: str
    principal: Principal
    provider: Provider
    occurred_at: Timestamp


class TokenAcquired(TokenEventBase):
    kind: Literal["acquired"] = "acquired"
    flow: AcquisitionFlow
    predicted_death_at: Timestamp | None = None


class TokenRefreshed(TokenEventBase):
    kind: Literal["refreshed"] = "refreshed"
    rotated: bool
    predicted_death_at: Timestamp | None = None


class TokenRefreshFailed(TokenEventBase):
    """A streak of transient failures began (not sent per attempt)."""

    kind: Literal["refresh_failed"] = "refresh_failed"
    error: str
    retry_after_s: float | None = None


class TokenReauthorizationRequired(TokenEventBase):
    kind: Literal["reauthorization_required"] = "reauthorization_required"
    error: str
    error_codes: tuple[int, ...] = ()
    detail: str


class TokenExpiring(TokenEventBase):
    kind: Literal["expiring"] = "expiring"
    predicted_death_at: Timestamp


class TokenDeleted(TokenEventBase):
    kind: Literal["deleted"] = "deleted"
    reason: str


class TokenRecovered(TokenEventBase):
    """The provider answered again after a streak of transient failures."""

    kind: Literal["recovered"] = "recovered"


TOKEN_EVENTS: dict[str, type[TokenEventBase]] = {
    "acquired": TokenAcquired,
    "refreshed": TokenRefreshed,
    "refresh_failed": TokenRefreshFailed,
    "reauthorization_required": TokenReauthorizationRequired,
    "expiring": TokenExpiring,
    "deleted": TokenDeleted,
    "recovered": TokenRecovered,
}


def token_event_subject(kind: str) -> str:
    return f"{TOKEN_EVENT_PREFIX}{kind}"
