"""What token-service's answer means for a delivery."""

from __future__ import annotations

from fleetmail_contracts.tokens import AccessTokenOutcome, AccessTokenReply, Principal, PrincipalKind

from ..errors import AwaitingAuthorization, ConfigurationError, ReauthorizationNeeded, TokenUnavailable

SIGN_IN_HELPS = frozenset({AccessTokenOutcome.NO_GRANT, AccessTokenOutcome.REAUTHORIZATION_REQUIRED})


def access_token_of(reply: AccessTokenReply, principal: Principal) -> str:
    """The access token in `reply`, or the error that says why there is none.

    - no grant for a login user, or one the provider refused for good: the job waits for
      their sign-in (`AwaitingAuthorization`); a dead grant is the user's to renew, and no
      administrator action helps;
    - no administrator grant yet (OAuth 2.0 on, never acquired): the job waits for [Acquire];
    - the provider cannot answer now: retry (`TokenUnavailable`, with its Retry-After);
    - fleetmail or the tenant set up wrongly: fix a setting (`ConfigurationError`);
    - anything else (a dead administrator grant): acquire it again.
    """
    if reply.outcome is AccessTokenOutcome.GRANTED and reply.access_token:
        return reply.access_token
    if principal.kind is PrincipalKind.USER and reply.outcome in SIGN_IN_HELPS:
        raise AwaitingAuthorization(principal.address)
    if principal.kind is PrincipalKind.ADMINISTRATOR and reply.outcome is AccessTokenOutcome.NO_GRANT:
        raise AwaitingAuthorization(principal.address, administrator=True)
    if reply.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE:
        raise TokenUnavailable(reply.detail or "the identity provider is unavailable", reply.retry_after_s)
    if reply.outcome is AccessTokenOutcome.CONFIGURATION_ERROR:
        raise ConfigurationError(
            reply.detail or f"no token can be had for {principal.address} until a setting is fixed"
        )
    raise ReauthorizationNeeded(reply.detail or f"no usable grant for {principal.address}")
