"""What token-service's answer means for a delivery."""

from __future__ import annotations

from fleetmail_contracts.tokens import AccessTokenOutcome, AccessTokenReply, Principal, PrincipalKind

from ..errors import AwaitingAuthorization, ConfigurationError, ReauthorizationNeeded, TokenUnavailable


def access_token_of(reply: AccessTokenReply, principal: Principal) -> str:
    """The access token in `reply`, or the error that says why there is none.

    - no grant yet for a login user: the job waits for their sign-in (`AwaitingAuthorization`);
    - the provider cannot answer now: retry (`TokenUnavailable`, with its Retry-After);
    - fleetmail or the tenant set up wrongly: fix a setting (`ConfigurationError`);
    - anything else (a dead grant, no administrator grant): sign in again.
    """
    if reply.outcome is AccessTokenOutcome.GRANTED and reply.access_token:
        return reply.access_token
    if reply.outcome is AccessTokenOutcome.NO_GRANT and principal.kind is PrincipalKind.USER:
        raise AwaitingAuthorization(principal.address)
    if reply.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE:
        raise TokenUnavailable(reply.detail or "the identity provider is unavailable", reply.retry_after_s)
    if reply.outcome is AccessTokenOutcome.CONFIGURATION_ERROR:
        raise ConfigurationError(
            reply.detail or f"no token can be had for {principal.address} until a setting is fixed"
        )
    raise ReauthorizationNeeded(reply.detail or f"no usable grant for {principal.address}")
