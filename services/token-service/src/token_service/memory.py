"""What one replica remembers between requests: the access tokens it may hand out without
reading the store, which grants are in a streak of transient refresh failures, and when it
last recorded a use of each grant."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetmail_contracts.tokens import Principal, TokenResource

from .domain import grant_id, needs_refresh
from .model import CachedToken

USES_REMEMBERED = 100_000


class TokenMemory:
    def __init__(self, refresh_margin: timedelta) -> None:
        self.refresh_margin = refresh_margin
        self._tokens: dict[str, CachedToken] = {}
        self._failing: set[str] = set()
        self._used: dict[str, datetime] = {}

    def due(self, token: CachedToken, now: datetime) -> bool:
        """Too close to expiry to hand out (the margin, capped at half the token's life)."""
        return needs_refresh(token.expires_at, now, self.refresh_margin, token.issued_at)

    def fresh(
        self, principal: Principal, now: datetime, resource: TokenResource = TokenResource.SMTP
    ) -> CachedToken | None:
        """A token good to hand out for this principal's mailbox and `resource`, without
        reading the store."""
        token = self._tokens.get(grant_id(principal))
        if token is None or self.due(token, now) or not token.serves(resource):
            return None
        if token.address is not None and token.address.casefold() != principal.address.casefold():
            return None  # another mailbox's: the administrator address changed
        return token

    def use_unrecorded(self, principal: Principal, now: datetime, every: timedelta) -> bool:
        """True when this replica has not recorded a use of the grant within `every` (it then
        counts this one as recorded): a user's activity is written at most that often."""
        key = grant_id(principal)
        noted = self._used.get(key)
        if noted is not None and now - noted < every:
            return False
        if len(self._used) >= USES_REMEMBERED:
            self._used.clear()  # only costs a write per grant used again
        self._used[key] = now
        return True

    def forget_use(self, principal: Principal) -> None:
        self._used.pop(grant_id(principal), None)

    def remember(self, principal: Principal, token: CachedToken) -> None:
        self._tokens[grant_id(principal)] = token

    def forget(self, principal: Principal) -> None:
        self._tokens.pop(grant_id(principal), None)

    def start_failing(self, principal: Principal) -> bool:
        """True when this begins a streak of transient failures (announced once)."""
        key = grant_id(principal)
        if key in self._failing:
            return False
        self._failing.add(key)
        return True

    def stop_failing(self, principal: Principal) -> bool:
        """True when a streak of failures ends (the grant recovered)."""
        key = grant_id(principal)
        if key not in self._failing:
            return False
        self._failing.discard(key)
        return True
