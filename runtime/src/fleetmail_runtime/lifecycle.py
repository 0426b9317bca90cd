"""The skeleton every service runs on: telemetry, broker, MongoDB, tenants, background work.

A service's `bootstrap` builds one `ServiceRuntime`, constructs its own objects on it (no
I/O happens before `lifespan` runs, so every object exists, typed, from the start), and
registers what must happen at start and stop:

    runtime = ServiceRuntime("token-service", settings.common, uses=(streams.TENANTS_BUCKET,))
    grants = GrantStore(runtime.mongo, settings.database, keyring)
    runtime.on_start(grants.ensure_indexes)
    runtime.every(settings.keepalive_interval_s, service.sweep, "the keep-alive sweep")
    runtime.gauges([streams.TOKEN_DEVICES_CONSUMER], GrantGauges(grants).poll)
    app = FastStream(runtime.broker, lifespan=runtime.lifespan)

`lifespan` starts, in this order: the broker's connection, the streams and buckets, the
tenant watcher, the `on_start` hooks (in the order given), the periodic tasks and the
gauges. It tears down in exactly the reverse order — `on_stop` hooks first (last registered,
first run), then the tenant watcher, MongoDB and telemetry — even when start-up failed
half-way, so nothing is left running or half-closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from faststream.nats import NatsBroker
from pymongo import AsyncMongoClient

from .bus import ALL_BUCKETS, Bus, declare_streams, make_broker, own_reply_inboxes
from .gauges import gauges_polled
from .mongo import connect_mongo
from .periodic import periodic
from .settings import CommonSettings
from .telemetry import Telemetry, configure_telemetry
from .tenants import TenantDirectory

Hook = Callable[[], Awaitable[Any]]


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        common: CommonSettings,
        *,
        uses: tuple[str, ...] = ALL_BUCKETS,
        mongo: bool = True,
        bus_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.common = common
        self.uses = uses
        self.telemetry: Telemetry = configure_telemetry(name, common)
        self.broker: NatsBroker = make_broker(common, name, self.telemetry)
        self.bus = Bus(self.broker, timeout_s=bus_timeout_s)
        self.tenants = TenantDirectory(self.broker)
        # The client connects lazily: creating it here does no I/O.
        self._mongo = connect_mongo(common, name) if mongo else None
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._periodic: list[tuple[float, Hook, str]] = []
        self._consumers: list[tuple[str, str]] = []
        self._gauge_sources: list[Callable[[], Awaitable[None]]] = []

    @property
    def mongo(self) -> AsyncMongoClient[dict[str, Any]]:
        if self._mongo is None:
            raise RuntimeError(f"{self.name} was built without MongoDB (ServiceRuntime(mongo=False))")
        return self._mongo

    def on_start(self, hook: Hook) -> None:
        """Run `hook` once the bus, the streams and the tenants are up (in registration order)."""
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Run `hook` at shutdown, before the bus and MongoDB go (last registered, first run)."""
        self._on_stop.append(hook)

    def every(self, seconds: float, work: Hook, what: str) -> None:
        """Run `work` every `seconds` while the service runs; a failed round is logged, not fatal."""
        self._periodic.append((seconds, work, what))

    def gauges(self, consumers: list[tuple[str, str]], *sources: Callable[[], Awaitable[None]]) -> None:
        """Report these durable consumers' lag, and poll each source, every metrics poll."""
        self._consumers.extend(consumers)
        self._gauge_sources.extend(sources)

    @contextlib.asynccontextmanager
    async def lifespan(self, *_app: Any) -> AsyncIterator[None]:
        """Start everything, yield while the service serves, then tear down in reverse."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.telemetry.shutdown)
            if self._mongo is not None:
                stack.push_async_callback(self._mongo.close)
            own_reply_inboxes(self.broker, self.name)  # before any subscriber starts
            await self.broker.connect()
            await declare_streams(self.broker, self.common, uses=self.uses)
            await self.tenants.start()
            stack.push_async_callback(self.tenants.stop)
            for hook in self._on_start:
                await hook()
            for hook in self._on_stop:
                stack.push_async_callback(hook)
            for seconds, work, what in self._periodic:
                await stack.enter_async_context(periodic(seconds, work, what))
            await stack.enter_async_context(
                gauges_polled(self.telemetry, self.broker, self._consumers, *self._gauge_sources)
            )
            yield
