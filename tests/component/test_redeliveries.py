"""`fleetmail.consumer.redeliveries` counts the JetStream messages a consumer gets more than once,
for single-message and batch subscribers, on the product's broker and a real nats-server (the
module's own: nothing else of the stack is needed)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats
from faststream.exceptions import NackMessage
from faststream.nats import JStream, PullSub
from fleetmail_runtime.bus import make_broker
from fleetmail_runtime.settings import CommonSettings
from fleetmail_runtime.telemetry import Telemetry
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def redeliveries(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    counted: dict[tuple[str, str], int] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "fleetmail.consumer.redeliveries":
                    for point in metric.data.data_points:
                        counted[(point.attributes["stream"], point.attributes["consumer"])] = point.value
    return counted


async def test_messages_delivered_again_are_counted_per_stream_and_consumer(nats_url: str) -> None:
    name = f"redeliver{uuid.uuid4().hex[:8]}"
    stream = JStream(name.upper(), subjects=[f"{name}.>"])
    reader = InMemoryMetricReader()
    telemetry = Telemetry("redeliveries-test", tracing=False, metering=True)
    telemetry.meter_provider = MeterProvider(metric_readers=[reader])
    broker = make_broker(CommonSettings(nats_url=nats_url), "redeliveries-test", telemetry)
    seen: dict[str, int] = {}
    done = asyncio.Event()

    def note(what: str) -> bool:
        """Whether this is the first time `what` is seen; done once both came twice."""
        seen[what] = seen.get(what, 0) + 1
        if seen.get("single") == 2 and seen.get("batch") == 2:
            done.set()
        return seen[what] == 1

    @broker.subscriber(
        f"{name}.single", stream=stream, durable=f"{name}-single", pull_sub=PullSub(timeout=0.2)
    )
    async def single(body: str) -> None:
        if note("single"):
            raise NackMessage()  # the first delivery is refused: JetStream delivers it again

    @broker.subscriber(
        f"{name}.batch",
        stream=stream,
        durable=f"{name}-batch",
        pull_sub=PullSub(batch_size=8, timeout=0.2, batch=True),
    )
    async def batch(bodies: list[str]) -> None:
        if note("batch"):
            raise NackMessage()

    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await broker.start()
        await js.publish(f"{name}.single", b'"one"')
        await js.publish(f"{name}.batch", b'"two"')
        await asyncio.wait_for(done.wait(), 20)
        assert redeliveries(reader) == {
            (name.upper(), f"{name}-single"): 1,
            (name.upper(), f"{name}-batch"): 1,
        }
    finally:
        await broker.stop()
        with contextlib.suppress(Exception):
            await js.delete_stream(name.upper())
        await client.close()
        telemetry.shutdown()
