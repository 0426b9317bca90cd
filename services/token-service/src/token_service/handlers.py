"""The request/reply edge: each request to a use case, each error class to an answer.

Nothing is decided here but how an outcome is said: which `AccessTokenOutcome` an error
class is, and that a refused acquisition or credentials change says why.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fleetmail_contracts.credentials import CredentialsView, SetCredentials
from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenReply,
    AccessTokenRequest,
    AcquisitionStarted,
    AcquisitionState,
    GrantStatusReply,
    StartAcquisition,
)

from .adapters.credentials import CredentialStore
from .errors import (
    ConfigurationError,
    NoGrant,
    OutsideTenant,
    PermanentError,
    TokenServiceError,
    TransientError,
)
from .ports import Clock
from .service import TokenService
from .telemetry import TOKEN_REQUESTS

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 5.0


def refused(exc: TokenServiceError) -> AccessTokenReply:
    """The answer to a token request that failed: by the error's class, with its message."""
    detail = str(exc)
    if isinstance(exc, TransientError):
        return AccessTokenReply(
            outcome=AccessTokenOutcome.PROVIDER_UNAVAILABLE,
            detail=detail,
            retry_after_s=exc.retry_after_s or DEFAULT_RETRY_AFTER_S,
        )
    if isinstance(exc, NoGrant):
        return AccessTokenReply(outcome=AccessTokenOutcome.NO_GRANT, detail=detail)
    if isinstance(exc, ConfigurationError | OutsideTenant):
        # OutsideTenant here: an app-only principal outside the mail domains; no sign-in helps.
        return AccessTokenReply(outcome=AccessTokenOutcome.CONFIGURATION_ERROR, detail=detail)
    return AccessTokenReply(outcome=AccessTokenOutcome.REAUTHORIZATION_REQUIRED, detail=detail)


async def access_token(service: TokenService, request: AccessTokenRequest) -> AccessTokenReply:
    try:
        token = await service.access.token(request.principal, request.force_refresh)
    except TokenServiceError as exc:
        reply = refused(exc)
    else:
        reply = AccessTokenReply(
            outcome=AccessTokenOutcome.GRANTED,
            access_token=token.access_token,
            expires_at=token.expires_at,
            provider=token.provider,
        )
    TOKEN_REQUESTS.add(1, {"outcome": reply.outcome.value})
    return reply


async def start_acquisition(service: TokenService, request: StartAcquisition) -> AcquisitionStarted:
    try:
        return await service.acquirer.start(request)
    except TokenServiceError as exc:
        return AcquisitionStarted(
            acquisition_id="",
            flow=request.flow,
            state=AcquisitionState.FAILED,
            expires_at=datetime.now(UTC),
            error=str(exc),
        )


async def grant_status(service: TokenService, tenant_id: str) -> GrantStatusReply:
    return GrantStatusReply(grants=tuple(g.view() for g in await service.grants_of(tenant_id)))


async def set_credentials(
    service: TokenService, credentials: CredentialStore, request: SetCredentials, clock: Clock
) -> CredentialsView:
    try:
        view = await credentials.set(request, clock())
    except TokenServiceError as exc:
        return CredentialsView(tenant_id=request.tenant_id, error=str(exc))
    await service.app_only.credentials_changed(request.tenant_id)
    log.info("credentials of tenant %s changed", request.tenant_id)
    return view


async def device_event(service: TokenService, event: dict[str, Any]) -> None:
    """Auto Delete reacts to any device event that names a tenant and a user. A permanent
    failure is logged and the event acknowledged; a transient one raises, so it comes again."""
    tenant_id = str(event.get("tenant_id") or "")
    try:
        await service.deletion.on_device_event(tenant_id, str(event.get("kind") or ""), event.get("user"))
    except PermanentError as exc:
        log.warning("Auto Delete for tenant %s gave up: %s", tenant_id, exc)
