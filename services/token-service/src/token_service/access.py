"""Access tokens on request: single-flight within a replica, one refresh at a time across
replicas.

Within a replica, concurrent requests for one grant share a single attempt (the first one's
future). Across replicas, the grant's lease decides who redeems it; the others re-read the
store every `lease_poll_s` until the holder has stored a fresh token, and give up with a
transient error after twice the lease's lifetime. A forced refresh (the SMTP server refused
the token) accepts only a token issued after the request began.

A grant stores one access token at a time, for the resource last asked for (SMTP or Graph: a
Microsoft token has one audience): a tenant uses one transport, so only a change of transport
makes the other resource's token be redeemed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from fleetmail_contracts.tokens import Principal, PrincipalKind, TokenResource

from .domain import grant_id
from .drift import Drift
from .errors import RefreshContended, StoreUnavailable
from .memory import TokenMemory
from .model import CachedToken, StoredGrant
from .ports import Clock, GrantStore, Sleeper
from .refresh import Refresher
from .settings import TokenSettings

log = logging.getLogger(__name__)


class AccessTokens:
    def __init__(
        self,
        settings: TokenSettings,
        grants: GrantStore,
        drift: Drift,
        refresher: Refresher,
        memory: TokenMemory,
        clock: Clock,
        sleeper: Sleeper,
        owner: str,
    ) -> None:
        self.grants = grants
        self.drift = drift
        self.refresher = refresher
        self.memory = memory
        self.clock = clock
        self.sleeper = sleeper
        self.owner = owner
        self.lease_ttl = timedelta(seconds=settings.lease_ttl_s)
        self.lease_poll_s = settings.lease_poll_s
        self.use_record_interval = timedelta(seconds=settings.use_record_interval_s)
        self._in_flight: dict[str, asyncio.Future[CachedToken]] = {}

    async def token(
        self, principal: Principal, force_refresh: bool = False, resource: TokenResource = TokenResource.SMTP
    ) -> CachedToken:
        """A token for `resource` good for at least the refresh margin; raises a
        `TokenServiceError`. A login user's use is recorded (at most every
        `use_record_interval_s`): the tenant's `user_token_idle_days` counts from it."""
        token = await self._token(principal, force_refresh, resource)
        if principal.kind is PrincipalKind.USER and self.memory.use_unrecorded(
            principal, self.clock(), self.use_record_interval
        ):
            try:
                await self.grants.record_use(principal, self.clock())
            except StoreUnavailable as exc:  # the token is good; the use is recorded next time
                self.memory.forget_use(principal)
                log.warning("could not record a use of a grant of tenant %s: %s", principal.tenant_id, exc)
        return token

    async def _token(self, principal: Principal, force_refresh: bool, resource: TokenResource) -> CachedToken:
        cached = None if force_refresh else self.memory.fresh(principal, self.clock(), resource)
        if cached is not None and await self.drift.fits(principal, cached):
            return cached
        key = f"{grant_id(principal)}|{resource}"
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        future: asyncio.Future[CachedToken] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            token = await self._obtain(principal, force_refresh, self.clock(), resource)
        except BaseException as exc:
            future.set_exception(exc)
            # Waiters re-raise it; mark it retrieved so an unawaited future does not warn.
            future.exception()
            raise
        else:
            future.set_result(token)
            return token
        finally:
            del self._in_flight[key]

    def _usable(
        self, grant: StoredGrant, force_refresh: bool, started_at: datetime, resource: TokenResource
    ) -> CachedToken | None:
        """The stored access token, if it is for `resource` and good enough to hand out."""
        token = CachedToken.of(grant)
        if token is None or self.memory.due(token, self.clock()) or not token.serves(resource):
            return None
        if force_refresh and (token.issued_at is None or token.issued_at < started_at):
            return None
        return token

    async def _obtain(
        self, principal: Principal, force_refresh: bool, started_at: datetime, resource: TokenResource
    ) -> CachedToken:
        """A token from the store, or a refresh under the grant's lease; waits for another holder."""
        deadline = self.clock() + self.lease_ttl * 2
        while True:
            grant = await self.drift.grant_for(principal)
            if (usable := self._usable(grant, force_refresh, started_at, resource)) is not None:
                self.memory.remember(principal, usable)
                return usable
            if await self.grants.take_lease(principal, self.owner, self.clock(), self.lease_ttl):
                return await self._under_lease(principal, force_refresh, started_at, resource)
            if self.clock() > deadline:
                raise RefreshContended("another replica is refreshing this grant; try again", 1.0)
            await self.sleeper(self.lease_poll_s)

    async def _under_lease(
        self, principal: Principal, force_refresh: bool, started_at: datetime, resource: TokenResource
    ) -> CachedToken:
        try:
            # Re-read under the lease: another replica may have refreshed meanwhile.
            grant = await self.drift.grant_for(principal)
            if (usable := self._usable(grant, force_refresh, started_at, resource)) is not None:
                await self.grants.release_lease(principal, self.owner)
                self.memory.remember(principal, usable)
                return usable
            return await self.refresher.refresh(grant, resource)
        except BaseException:
            await self.grants.release_lease(principal, self.owner)
            raise
