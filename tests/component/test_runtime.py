"""The runtime every service runs on, against a real nats-server: the lifecycle's order, and
NATS errors translated once into `BusUnavailable`."""

from __future__ import annotations

import uuid

import pytest
from fleetmail_contracts import streams
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.bus import BusUnavailable
from fleetmail_runtime.lifecycle import ServiceRuntime
from fleetmail_runtime.settings import CommonSettings

from tests.utils import eventually


def runtime_on(nats_url: str) -> ServiceRuntime:
    return ServiceRuntime(
        "runtime-test",
        CommonSettings(nats_url=nats_url, metrics_poll_s=0.05),
        uses=(streams.TENANTS_BUCKET,),
        mongo=False,
        bus_timeout_s=0.5,
    )


async def test_it_starts_in_order_and_tears_down_in_reverse(nats_url) -> None:
    runtime = runtime_on(nats_url)
    seen: list[str] = []

    async def step(name: str) -> None:
        seen.append(name)

    async def started_first() -> None:
        # The bus and the tenant watcher are up before any hook runs.
        assert runtime.broker.connection is not None and runtime.broker.connection.is_connected
        await runtime.tenants.put(TenantSettings(tenant_id="acme"))
        seen.append("start 1")

    rounds: list[int] = []

    async def tick() -> None:
        rounds.append(1)

    runtime.on_start(started_first)
    runtime.on_start(lambda: step("start 2"))
    runtime.on_stop(lambda: step("stop 1"))
    runtime.on_stop(lambda: step("stop 2"))
    runtime.every(0.01, tick, "a test tick")
    async with runtime.lifespan():
        await eventually(lambda: len(rounds) >= 3, within=5, what="the periodic task to run")
        assert (await runtime.tenants.get("acme")).tenant_id == "acme"
    assert seen == ["start 1", "start 2", "stop 2", "stop 1"]
    count = len(rounds)
    assert runtime.broker.connection is None or not runtime.broker.connection.is_connected or count
    # The periodic task stopped with the lifespan.
    assert len(rounds) == count
    with pytest.raises(RuntimeError, match="without MongoDB"):
        runtime.mongo


async def test_a_request_nobody_answers_is_bus_unavailable(nats_url) -> None:
    runtime = runtime_on(nats_url)
    async with runtime.lifespan():
        with pytest.raises(BusUnavailable, match=r"no answer on fleetmail\.rpc\.v1\.nobody"):
            await runtime.bus.request(
                TenantSettings(tenant_id="acme"), "fleetmail.rpc.v1.nobody", TenantSettings
            )


async def test_a_publish_says_when_jetstream_dropped_a_duplicate(nats_url) -> None:
    runtime = runtime_on(nats_url)
    async with runtime.lifespan():
        message_id = uuid.uuid4().hex
        subject = "fleetmail.events.v1.test.published"
        first = await runtime.bus.publish(
            TenantSettings(tenant_id="acme"), subject, stream=streams.EVENTS_STREAM, msg_id=message_id
        )
        again = await runtime.bus.publish(
            TenantSettings(tenant_id="acme"), subject, stream=streams.EVENTS_STREAM, msg_id=message_id
        )
        assert (first, again) == (False, True)
        with pytest.raises(BusUnavailable):
            await runtime.bus.publish(TenantSettings(tenant_id="acme"), "nowhere.at.all", stream="NO_SUCH")


async def test_a_tenant_listener_hears_each_change_after_start_up_with_the_settings_before_it(
    nats_url,
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    writer, reader = runtime_on(nats_url), runtime_on(nats_url)
    heard: list[tuple[bool | None, bool]] = []

    async def listener(previous: TenantSettings | None, current: TenantSettings) -> None:
        if current.tenant_id != tenant_id:
            return
        heard.append((previous.oauth_enabled if previous else None, current.oauth_enabled))
        if len(heard) == 1:
            raise RuntimeError("a listener that fails once")

    async with writer.lifespan():
        await writer.tenants.put(TenantSettings(tenant_id=tenant_id))  # there before the reader
        reader.tenants.on_change(listener)
        async with reader.lifespan():
            await eventually(lambda: reader.tenants.cached(tenant_id), what="the reader to load it")
            await writer.tenants.put(TenantSettings(tenant_id=tenant_id, oauth_enabled=True))
            await eventually(lambda: heard == [(False, True)], what="the change to be heard")
            # The failure was logged; the next change is heard all the same.
            await writer.tenants.put(TenantSettings(tenant_id=tenant_id, oauth_enabled=False))
            await eventually(lambda: len(heard) == 2, what="the next change")
    assert heard == [(False, True), (True, False)]
