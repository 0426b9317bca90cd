"""token-service's errors.

TokenServiceError
├── ReauthorizationRequired   the provider refused the grant for good (terminal)
├── ProviderUnavailable       the provider failed transiently; retry later
├── IdentityMismatch          someone other than the grant's principal signed in
├── ConfigurationError        tenant or app registration settings are wrong or missing
└── NoGrant                   no grant exists for this principal
"""

from __future__ import annotations


class TokenServiceError(Exception):
    pass


class ReauthorizationRequired(TokenServiceError):
    def __init__(self, message: str, error: str = "invalid_grant", error_codes: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.error = error
        self.error_codes = error_codes


class ProviderUnavailable(TokenServiceError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IdentityMismatch(TokenServiceError):
    pass


class ConfigurationError(TokenServiceError):
    pass


class NoGrant(TokenServiceError):
    pass
