"""The request/reply edge: each request to a use case, each error class to an answer.

Nothing is decided here but how an outcome is said: which `AccessTokenOutcome` an error
class is, and that a refused acquisition or credentials change says why. Every request is
answered: a failure no handler foresaw becomes an `RpcFailure` (`answered`), so a caller
never waits out its timeout for a reply that will not come.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from faststream.nats import NatsResponse
from fleetmail_contracts.credentials import CredentialsView, SetCredentials
from fleetmail_contracts.rpc import RPC_FAILURE_HEADER, RpcFailure
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

P = ParamSpec("P")
R = TypeVar("R")


def failure_of(exc: Exception) -> RpcFailure:
    """What a caller is told of a failure: a token-service error's own message (written to be
    shown, never carrying a secret); of anything else only its class, the rest is logged."""
    if isinstance(exc, TokenServiceError):
        return RpcFailure(
            reason=str(exc)[:1000], kind="transient" if isinstance(exc, TransientError) else "permanent"
        )
    return RpcFailure(
        reason=f"it failed unexpectedly ({type(exc).__name__}); its log has the details",
        kind="permanent",
    )


def answered(
    handler: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R | NatsResponse]]:
    """The handler's reply, or an `RpcFailure` saying why there is none."""

    @functools.wraps(handler)
    async def answering(*args: P.args, **kwargs: P.kwargs) -> R | NatsResponse:
        try:
            return await handler(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, TokenServiceError):
                log.warning("%s could not be answered: %s", handler.__name__, exc)
            else:
                log.exception("%s failed unexpectedly", handler.__name__)
            failure = failure_of(exc)
            return NatsResponse(failure.model_dump_json(), headers={RPC_FAILURE_HEADER: failure.kind})

    # FastStream decodes the request by the handler's signature and checks the reply against
    # its return annotation, which the failure is not: the same signature, types resolved
    # where the handler was written, without the return.
    hints = typing.get_type_hints(handler)
    signature = inspect.signature(handler)
    answering.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
        ],
        return_annotation=inspect.Signature.empty,
    )
    return answering


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
        token = await service.access.token(request.principal, request.force_refresh, request.resource)
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


def event_users(event: dict[str, Any]) -> list[str]:
    """The users a device event names: the one logged in, and (an auto reset) every user whose
    session was on the device."""
    named = [event.get("user")]
    sessions = event.get("session_users")
    if isinstance(sessions, list | tuple):
        named.extend(sessions)
    return [u for u in named if isinstance(u, str)]


async def device_event(service: TokenService, event: dict[str, Any]) -> None:
    """Auto Delete reacts to any device event that names a tenant and users. A permanent
    failure is logged and the event acknowledged; a transient one raises, so it comes again."""
    tenant_id = str(event.get("tenant_id") or "")
    try:
        await service.deletion.on_device_event(tenant_id, str(event.get("kind") or ""), event_users(event))
    except PermanentError as exc:
        log.warning("Auto Delete for tenant %s gave up: %s", tenant_id, exc)
