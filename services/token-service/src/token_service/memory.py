"""What one replica remembers between requests: the access tokens it may hand out without
reading the store, and which grants are in a streak of transient refresh failures."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetmail_contracts.tokens import Principal

from .domain import grant_id, needs_refresh
from .model import CachedToken


class TokenMemory:
    def __init__(self, refresh_margin: timedelta) -> None:
        self.refresh_margin = refresh_margin
        self._tokens: dict[str, CachedToken] = {}
        self._failing: set[str] = set()

    def due(self, token: CachedToken, now: datetime) -> bool:
        """Too close to expiry to hand out (the margin, capped at half the token's life)."""
        return needs_refresh(token.expires_at, now, self.refresh_margin, token.issued_at)

    def fresh(self, principal: Principal, now: datetime) -> CachedToken | None:
        token = self._tokens.get(grant_id(principal))
        return token if token is not None and not self.due(token, now) else None

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
