"""token-service's errors: one tree, split by what the caller should do.

TokenServiceError
├── TransientError                 try again later: the grant and the settings are fine
│   ├── ProviderUnavailable        the identity provider failed or throttles (retry_after_s)
│   │   ├── RefreshContended       another replica held the grant's lease for too long
│   │   └── UnreadableReply        the answer was not an OAuth reply (an HTML page, not JSON…)
│   ├── StoreUnavailable           MongoDB could not be reached
│   └── SettingsChanging           the caller and token-service see different tenant settings
│                                  (an administrator address just changed): ask again shortly
└── PermanentError                 the same request fails again until someone acts
    ├── NoGrant                    no grant exists for this principal: acquire one
    ├── ReauthorizationRequired    the provider refused the grant for good: sign in again
    ├── SignInFailed               a sign-in could not complete (declined, wrong flow, replayed…)
    │   ├── IdentityMismatch       someone other than the grant's principal signed in
    │   ├── OutsideTenant          the address is not in the tenant's mail domains
    │   └── ScopeNotGranted        the user left a needed permission unticked at consent
    └── ConfigurationError         a setting is wrong or missing; `setting` names it
        └── UnknownTenant          no tenant by that id

Adapters raise these (`raise StoreUnavailable(...) from exc`), never the libraries' own.
The request/reply edge turns a class into an answer: `AccessTokenOutcome.PROVIDER_UNAVAILABLE`
with a retry-after for a transient error, `NO_GRANT`, `REAUTHORIZATION_REQUIRED` or
`CONFIGURATION_ERROR` for a permanent one. A request whose reply has no place for a refusal,
or that failed in a way nobody foresaw, is answered with an `RpcFailure` (`handlers.answered`):
no request goes unanswered. No message ever carries a token.
"""

from __future__ import annotations


class TokenServiceError(Exception):
    pass


class TransientError(TokenServiceError):
    """Retry later; `retry_after_s` says when, where anyone knows."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(TransientError):
    pass


class SettingsChanging(TransientError):
    """The request names another administrator address than the grant's, while the tenant's
    settings as token-service sees them agree with the grant: a change is on its way to one
    side or the other. No token of the other mailbox is handed out meanwhile."""


class RefreshContended(ProviderUnavailable):
    pass


class UnreadableReply(ProviderUnavailable):
    """The token endpoint's answer is not an OAuth reply: not JSON, not a JSON object, or
    without the fields a reply has. Usually something in between answered (a proxy's error
    page); a refresh tries again later, a sign-in ends and says so."""

    def __init__(self, what: str, retry_after_s: float | None = 5.0) -> None:
        super().__init__(
            f"the identity provider's answer to the {what} could not be read (not an OAuth reply): "
            "something between fleetmail and the provider, such as a proxy, may have answered "
            "instead; check the tenant's proxy_url and the network, then try again",
            retry_after_s,
        )


class StoreUnavailable(TransientError):
    pass


class PermanentError(TokenServiceError):
    pass


class NoGrant(PermanentError):
    pass


class ReauthorizationRequired(PermanentError):
    def __init__(self, message: str, error: str = "invalid_grant", error_codes: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.error = error
        self.error_codes = error_codes


class SignInFailed(PermanentError):
    pass


class IdentityMismatch(SignInFailed):
    pass


class OutsideTenant(SignInFailed):
    """A sign-in for an address outside the tenant's mail domains: refused before any
    identity provider is asked."""


class ScopeNotGranted(SignInFailed):
    """The consent granted fewer scopes than asked for (Google's granular consent): the grant
    could not send, so it is not stored."""


class ConfigurationError(PermanentError):
    """`setting` is what an operator or administrator changes to fix it; the message names it."""

    def __init__(self, message: str, *, setting: str) -> None:
        if setting not in message:
            message = f"{message} (check {setting})"
        super().__init__(message)
        self.setting = setting


class UnknownTenant(ConfigurationError):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(
            f"no tenant {tenant_id!r}: create it with `fleetmail tenants set {tenant_id}` "
            "or correct the tenant id the request names",
            setting=f"fleetmail tenants set {tenant_id}",
        )
        self.tenant_id = tenant_id
