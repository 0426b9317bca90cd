"""token-service's use cases, built from its ports: one object per use case, all sharing this
replica's memory of tokens and its lease-owner name.

    service = TokenService(settings, grants=..., acquisitions=..., identity=..., tenants=...,
                           events=..., clock=clock, sleeper=clock.sleep)
    token = await service.access.token(principal)

| use case | module |
|---|---|
| access tokens, single-flight, the lease wait | `access.py` |
| redeeming under the lease, compare-and-set | `refresh.py` |
| app-only grants, the grant a request finds | `app_only.py` |
| keep-alive sweep, expiry announcements | `keepalive.py` |
| deletion, Auto Delete, idle user grants' lapse | `deletion.py` |
| grants that no longer fit the tenant's settings | `drift.py` |
| acquisition: authorization code, app-only | `acquisition.py` |
| acquisition: device code, takeover | `device_code.py` |
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from .access import AccessTokens
from .acquisition import Acquirer
from .app_only import AppOnlyGrants
from .deletion import Deletion
from .device_code import DeviceCodes
from .drift import Drift
from .keepalive import KeepAlive
from .memory import TokenMemory
from .model import StoredGrant
from .ports import (
    AcquisitionStore,
    Clock,
    EventPublisher,
    GrantStore,
    IdentityProvider,
    Sleeper,
    TenantReader,
)
from .refresh import Refresher
from .settings import TokenSettings
from .signed_in import SignedIn


def utc_now() -> datetime:
    return datetime.now(UTC)


def replica_name() -> str:
    """Names this replica as the holder of leases: host, process and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class TokenService:
    def __init__(
        self,
        settings: TokenSettings,
        *,
        grants: GrantStore,
        acquisitions: AcquisitionStore,
        identity: IdentityProvider,
        tenants: TenantReader,
        events: EventPublisher,
        clock: Clock = utc_now,
        sleeper: Sleeper = asyncio.sleep,
        owner: str | None = None,
    ) -> None:
        self.grants = grants
        self.owner = owner or replica_name()
        self.memory = TokenMemory(timedelta(seconds=settings.refresh_margin_s))
        self.app_only = AppOnlyGrants(grants, tenants, identity, events, self.memory, clock)
        self.refresher = Refresher(
            settings, grants, tenants, identity, events, self.memory, clock, self.owner
        )
        self.drift = Drift(grants, tenants, self.app_only, self.refresher, self.memory)
        self.access = AccessTokens(
            settings, grants, self.drift, self.refresher, self.memory, clock, sleeper, self.owner
        )
        self.deletion = Deletion(grants, tenants, identity, events, self.memory, clock)
        self.keepalive = KeepAlive(
            settings,
            grants,
            self.drift,
            self.deletion,
            self.refresher,
            events,
            clock,
            self.owner,
            identity,
            tenants,
        )
        signed_in = SignedIn(grants, tenants, events, self.memory, clock, settings.microsoft_directory)
        self.device_codes = DeviceCodes(
            settings, identity, acquisitions, tenants, signed_in, clock, sleeper, self.owner
        )
        self.acquirer = Acquirer(
            settings, identity, acquisitions, tenants, signed_in, self.device_codes, self.app_only, clock
        )

    async def grants_of(self, tenant_id: str) -> list[StoredGrant]:
        """The tenant's grants, for [OAuth 2.0] → Refresh Tokens."""
        return await self.grants.list_tenant(tenant_id)

    async def close(self) -> None:
        await self.device_codes.close()
