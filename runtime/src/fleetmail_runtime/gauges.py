"""Gauges read by polling: consumer lag, and any service's own polled figures."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

from .periodic import periodic

if TYPE_CHECKING:
    from .telemetry import Telemetry

log = logging.getLogger(__name__)


class PolledGauge:
    """An observable gauge that reports what its owner's last poll found: a gauge's callback
    cannot wait on the network or the database, so a periodic task reads the source and sets
    the values here. With `zero_when_gone`, a series the poll no longer finds reports 0, so a
    dashboard sees a status empty out rather than its line vanish."""

    def __init__(
        self, meter: metrics.Meter, name: str, *, unit: str, description: str, zero_when_gone: bool = False
    ) -> None:
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self._zero_when_gone = zero_when_gone
        meter.create_observable_gauge(name, callbacks=[self._observe], unit=unit, description=description)

    def set(self, readings: Iterable[tuple[Mapping[str, str], float]]) -> None:
        values = {tuple(sorted(labels.items())): value for labels, value in readings}
        if self._zero_when_gone:
            for key in self._values:
                values.setdefault(key, 0)
        self._values = values

    def _observe(self, _options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [metrics.Observation(value, dict(labels)) for labels, value in list(self._values.items())]


class ConsumerLag:
    """Pending and unacknowledged messages of a service's durable consumers, read from
    JetStream every few seconds."""

    def __init__(self, telemetry: Telemetry, consumers: list[tuple[str, str]]) -> None:
        self.consumers = consumers
        # The last reading of each consumer: one that cannot be read now keeps its last one.
        self.readings: dict[tuple[str, str], tuple[int, int]] = {}
        self.pending = PolledGauge(
            telemetry.meter,
            "fleetmail.consumer.pending",
            unit="{message}",
            description="Messages in the stream not yet delivered to the consumer (lag)",
        )
        self.ack_pending = PolledGauge(
            telemetry.meter,
            "fleetmail.consumer.ack_pending",
            unit="{message}",
            description="Messages delivered and not yet acknowledged",
        )

    async def poll(self, broker: Any) -> None:
        js = broker.connection.jetstream()
        for stream, consumer in self.consumers:
            try:
                info = await js.consumer_info(stream, consumer)
            except Exception as exc:  # the consumer may not exist yet; report what is known
                log.debug("consumer info for %s/%s: %s", stream, consumer, exc)
                continue
            self.readings[(stream, consumer)] = (info.num_pending or 0, info.num_ack_pending or 0)
        labelled = [({"stream": s, "consumer": c}, values) for (s, c), values in self.readings.items()]
        self.pending.set((labels, values[0]) for labels, values in labelled)
        self.ack_pending.set((labels, values[1]) for labels, values in labelled)


@asynccontextmanager
async def gauges_polled(
    telemetry: Telemetry,
    broker: Any,
    consumers: list[tuple[str, str]],
    *sources: Callable[[], Awaitable[None]],
) -> AsyncIterator[None]:
    """While the block runs, read the consumers' lag and each gauge source every
    `FLEETMAIL_METRICS_POLL_S`; nothing at all when metrics are off."""
    if not telemetry.metering:
        yield
        return
    lag = ConsumerLag(telemetry, consumers)

    async def poll() -> None:
        await lag.poll(broker)
        for source in sources:
            await source()

    async with periodic(telemetry.poll_s, poll, "reading the metrics' gauges"):
        yield
