"""Tenant settings as the other services read them: the `fleetmail_tenants` KV bucket.

job-gateway owns and writes the settings; readers keep the latest value of each tenant
in memory, kept current by a KV watch, so a change takes effect without restarts. A reader
that acts on a change (the notifier, when OAuth 2.0 is turned on) registers a listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from faststream.nats import NatsBroker
from fleetmail_contracts.streams import TENANTS_BUCKET
from fleetmail_contracts.tenants import TenantSettings
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)


class UnknownTenant(LookupError):
    pass


Listener = Callable[[TenantSettings | None, TenantSettings], Awaitable[None]]
"""Told `(previous, current)` when a tenant's settings are written; `previous` is None for a
new tenant."""


class TenantDirectory:
    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker
        self._kv: KeyValue | None = None
        self._cache: dict[str, TenantSettings] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._updates: KeyValue.KeyWatcher | None = None
        self._listeners: list[Listener] = []
        self._told: set[asyncio.Task[None]] = set()
        self._caught_up = False

    def on_change(self, listener: Listener) -> None:
        """Call `listener` for each tenant written after start-up (the values present at start
        are no change), in a task of its own: the watch never waits for it, and a listener
        that fails is logged."""
        self._listeners.append(listener)

    async def start(self) -> None:
        self._kv = await self._broker.key_value(TENANTS_BUCKET, history=5)
        self._updates = await self._kv.watchall(include_history=False)
        self._watcher = asyncio.create_task(self._watch(self._updates))

    async def stop(self) -> None:
        """End the watch: its iterator is told to stop (a cancelled task blocked in the
        watcher's queue was seen never to finish cancelling), then the task is awaited."""
        if self._updates is not None:
            with contextlib.suppress(Exception):
                await self._updates.stop()  # type: ignore[no-untyped-call]
        for told in list(self._told):
            told.cancel()
        if self._watcher is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._watcher), 2)
            except TimeoutError:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:
                self._caught_up = True  # the watch's marker: what follows is a change
                continue
            if entry.key is None:
                continue
            if entry.value:
                try:
                    settings = TenantSettings.model_validate_json(entry.value)
                except ValueError:
                    log.warning("ignoring unreadable settings for tenant %s", entry.key)
                    continue
                previous = self._cache.get(entry.key)
                self._cache[entry.key] = settings
                if self._caught_up:
                    self._tell(previous, settings)
            else:
                self._cache.pop(entry.key, None)

    def _tell(self, previous: TenantSettings | None, current: TenantSettings) -> None:
        for listener in self._listeners:
            told = asyncio.create_task(self._call(listener, previous, current))
            self._told.add(told)
            told.add_done_callback(self._told.discard)

    @staticmethod
    async def _call(listener: Listener, previous: TenantSettings | None, current: TenantSettings) -> None:
        try:
            await listener(previous, current)
        except Exception:
            log.exception("acting on the new settings of tenant %s failed", current.tenant_id)

    async def get(self, tenant_id: str) -> TenantSettings:
        cached = self._cache.get(tenant_id)
        if cached is not None:
            return cached
        assert self._kv is not None, "TenantDirectory.start() was not awaited"
        try:
            entry = await self._kv.get(tenant_id)
        except KeyNotFoundError as exc:
            raise UnknownTenant(f"no tenant {tenant_id!r}") from exc
        if not entry.value:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        settings = TenantSettings.model_validate_json(entry.value)
        self._cache[tenant_id] = settings
        return settings

    def cached(self, tenant_id: str) -> TenantSettings | None:
        """The tenant's settings if already seen, without a round trip (metrics' labels)."""
        return self._cache.get(tenant_id)

    def known(self) -> list[TenantSettings]:
        """Every tenant seen on the bucket so far (the watch keeps this current)."""
        return list(self._cache.values())

    async def put(self, settings: TenantSettings) -> None:
        assert self._kv is not None
        await self._kv.put(settings.tenant_id, settings.model_dump_json().encode())
        self._cache[settings.tenant_id] = settings
