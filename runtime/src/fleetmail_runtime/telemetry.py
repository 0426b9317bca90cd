"""OpenTelemetry for every service: traces, metrics, and the Prometheus scrape endpoint.

One call at start-up, `configure_telemetry(service, settings)`, returns a `Telemetry` that the
service passes on: to the broker (FastStream's telemetry middleware puts the trace context in
message headers, so one job is one trace across services), and to its own code for spans and
instruments.

- Traces go where `FLEETMAIL_OTEL_EXPORTER` says: `none` (no spans are made at all), `console`,
  or `otlp` (to `FLEETMAIL_OTEL_ENDPOINT`, a collector's OTLP/HTTP base URL; `otlp_encoding`
  writes the bytes). Sampling is parent-based with `FLEETMAIL_OTEL_SAMPLING_RATIO`, so a job is
  traced whole or not at all.
- Metrics are served for Prometheus on `FLEETMAIL_METRICS_PORT` (0: no endpoint) and, with the
  `otlp` exporter, pushed to the same collector. With neither, instruments are no-ops.
- MongoDB commands become spans (pymongo's command monitoring, which the async client shares).

Subjects name spans and label metrics; reply inboxes (`_INBOX.<random>`) are folded into one
name, so a million token requests make one label value, not a million.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.opentelemetry.provider import (
    NatsBatchTelemetrySettingsProvider,
    NatsTelemetrySettingsProvider,
)
from faststream.opentelemetry.consts import ERROR_TYPE, MESSAGING_DESTINATION_PUBLISH_NAME, MessageAction
from faststream.opentelemetry.middleware import BaseTelemetryMiddleware, TelemetryMiddleware
from nats.aio.msg import Msg
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .periodic import periodic
from .settings import CommonSettings

log = logging.getLogger(__name__)

METER_NAME = "fleetmail"
INBOX = "_INBOX"

# Latencies from milliseconds (a cached token) to minutes (a job deferred and retried).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


def normalise_subject(subject: str) -> str:
    """A subject fit for a span name or a metric label: reply inboxes become `_INBOX`."""
    if subject.startswith(INBOX + ".") or subject == INBOX:
        return INBOX
    return subject


@dataclass
class Telemetry:
    """What a service needs from OpenTelemetry: its providers, and whether traces and metrics
    are on (its own code uses the global API, which these providers back)."""

    service: str
    tracing: bool
    metering: bool
    tracer_provider: TracerProvider | None = None
    meter_provider: metrics.MeterProvider = field(default_factory=metrics.NoOpMeterProvider)
    poll_s: float = 5.0

    @property
    def meter(self) -> metrics.Meter:
        return self.meter_provider.get_meter(METER_NAME)

    def broker_middlewares(self) -> list[Any]:
        """FastStream middlewares: trace context through headers, messaging metrics, and the
        redelivery counter, all in one. Nothing at all when telemetry is off."""
        if not (self.tracing or self.metering):
            return []
        return [
            FleetmailNatsTelemetryMiddleware(
                tracer_provider=self.tracer_provider if self.tracing else trace.NoOpTracerProvider(),
                meter_provider=self.meter_provider,
                redeliveries=redelivery_counter(self.meter) if self.metering else None,
            )
        ]

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()


def _otlp_url(base: str | None, signal: str) -> str | None:
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"


def configure_telemetry(service: str, settings: CommonSettings) -> Telemetry:
    resource = Resource.create({"service.name": service, "service.namespace": "fleetmail"})
    telemetry = Telemetry(
        service=service,
        tracing=settings.otel_exporter != "none",
        metering=False,
        poll_s=settings.metrics_poll_s,
    )

    if telemetry.tracing:
        provider = TracerProvider(
            resource=resource, sampler=ParentBasedTraceIdRatio(settings.otel_sampling_ratio)
        )
        if settings.otel_exporter == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from .otlp_encoding import OtlpSpanExporter

            provider.add_span_processor(
                BatchSpanProcessor(OtlpSpanExporter(endpoint=_otlp_url(settings.otel_endpoint, "traces")))
            )
        trace.set_tracer_provider(provider)
        telemetry.tracer_provider = provider
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

        PymongoInstrumentor().instrument(tracer_provider=provider)

    readers: list[Any] = []
    if settings.metrics_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(port=settings.metrics_port, addr=settings.metrics_host)
        readers.append(PrometheusMetricReader())
    push = settings.otel_metrics == "otlp" or (
        settings.otel_metrics == "auto" and settings.otel_exporter == "otlp" and not settings.metrics_port
    )
    if push:
        # Pushing and being scraped both cost a collection of every series: one is enough
        # unless both are asked for.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=_otlp_url(settings.otel_endpoint, "metrics")),
                export_interval_millis=settings.otel_metrics_interval_s * 1000,
            )
        )
    if readers:
        telemetry.meter_provider = MeterProvider(
            resource=resource,
            metric_readers=readers,
            # Exemplars (a trace id kept beside a measurement) travel only over OTLP; the
            # Prometheus exporter drops them, so without a push they are work for nothing
            # (about a quarter of each measurement's cost). OTEL_METRICS_EXEMPLAR_FILTER still
            # decides when metrics are pushed.
            exemplar_filter=None if push else AlwaysOffExemplarFilter(),
            views=[
                View(
                    instrument_name="*duration*",
                    aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_S),
                ),
                View(
                    instrument_name="*latency*",
                    aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_S),
                ),
            ],
        )
        metrics.set_meter_provider(telemetry.meter_provider)
        telemetry.metering = True
    return telemetry


# --- FastStream ------------------------------------------------------------------------------


class _Single(NatsTelemetrySettingsProvider):
    def get_publish_destination_name(self, cmd: Any) -> str:
        return normalise_subject(cmd.destination)

    def get_consume_destination_name(self, msg: Any) -> str:
        return normalise_subject(msg.raw_message.subject)


class _Batch(NatsBatchTelemetrySettingsProvider):
    def get_publish_destination_name(self, cmd: Any) -> str:
        return normalise_subject(cmd.destination)

    def get_consume_destination_name(self, msg: Any) -> str:
        return normalise_subject(msg.raw_message[0].subject)


_SINGLE, _BATCH = _Single(), _Batch()  # stateless: one of each serves every message


def _settings_provider(msg: Any) -> Any:
    """Called for every message published or consumed, so it only compares types."""
    if isinstance(msg, (list, tuple)):  # a batch subscriber's messages
        return _BATCH
    if msg is None or isinstance(msg, Msg):
        return _SINGLE
    return None  # key-value and object-store watches


_TRACE_PROPAGATOR = TraceContextTextMapPropagator()


def _remote_span(headers: Mapping[str, Any] | None) -> trace.SpanContext | None:
    """The producer's span a message's `traceparent` header names, if any."""
    if not headers or "traceparent" not in headers:
        return None
    found = trace.get_current_span(_TRACE_PROPAGATOR.extract(headers)).get_span_context()
    return found if found.is_valid else None


class SpanScope:
    """`with SpanScope(tracer.start_span(...)) as span:` does what OpenTelemetry's
    `start_as_current_span` does: the span is current while the block runs and ends after it
    (unless `end=False`), and an exception leaving the block is recorded on it as `use_span`
    records one. A plain class rather than the API's generator-based context managers: the
    same work at about 5 µs less per span (a quarter of what recording a span costs), and
    every job passes through about eight spans."""

    __slots__ = ("_end", "_span", "_token")

    def __init__(self, span: trace.Span, *, end: bool = True) -> None:
        self._span, self._end = span, end

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, _type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        otel_context.detach(self._token)
        span = self._span
        if isinstance(exc, Exception) and span.is_recording():  # not a cancellation
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if self._end:
            span.end()


class _LeanTelemetry(BaseTelemetryMiddleware[Any]):
    """FastStream's telemetry middleware, doing only what fleetmail reads, per message.

    FastStream's middleware runs for every message published and consumed, whatever the
    sampling, and spans are most of telemetry's cost (about 60 µs each here, made and
    exported); its glue (baggage, FastStream context scopes) was another ~100 µs per message
    hop. fleetmail uses neither baggage nor FastStream's `CurrentSpan` injection, so:

    - **publish**: one PRODUCER span per message, where FastStream makes a "create" and a
      "publish" span; OpenTelemetry's messaging conventions ask for a separate create span
      only when messages are created apart from being sent (batches). The trace context goes
      in the headers, and `messaging.publish.duration` is recorded as before.
    - **consume, one message with a trace context** (every message fleetmail publishes): one
      CONSUMER "process" span, the child of the producer's span, current while the handler
      runs and ended after the ack (as FastStream does); `messaging.process.duration` as before.
    - **consume, a batch** (job-gateway's status projection, the notifier): one "process" span
      with a link to each message's producer span, where FastStream adds a "create" span as
      the batch's root.

    Anything else (a message without a trace context, a handler's return value, a batch
    published) keeps FastStream's behaviour.
    """

    __slots__ = ("_provider", "_redeliveries")

    def __init__(self, msg: Any, /, *, redeliveries: metrics.Counter | None, **kwargs: Any) -> None:
        super().__init__(msg, **kwargs)
        # The factory already ran once in the base class (into a name-mangled attribute).
        self._provider = self._BaseTelemetryMiddleware__settings_provider  # type: ignore[attr-defined]
        self._redeliveries = redeliveries

    async def on_receive(self) -> None:
        """Count the messages JetStream delivers more than once (a crash, a nack, or an ack
        that came too late), per stream and consumer. Here rather than in a middleware of its
        own: every middleware costs each message and each publish an object and a scope."""
        if self._redeliveries is None:
            return
        raws: list[Any] = self.msg if isinstance(self.msg, list) else [self.msg]
        for raw in raws:
            if raw is None or not (getattr(raw, "reply", None) or "").startswith("$JS.ACK."):
                continue
            meta = raw.metadata
            if meta is not None and meta.num_delivered and meta.num_delivered > 1:
                self._redeliveries.add(1, {"stream": meta.stream, "consumer": meta.consumer})

    async def publish_scope(self, call_next: Any, msg: Any) -> Any:
        provider = self._provider
        if provider is None or self._current_span is not None or len(msg.batch_bodies) > 1:
            return await super().publish_scope(call_next, msg)
        destination = provider.get_publish_destination_name(msg)
        attributes = provider.get_publish_attrs_from_cmd(msg)
        attributes[SpanAttributes.MESSAGING_OPERATION] = MessageAction.PUBLISH
        measured = {
            SpanAttributes.MESSAGING_SYSTEM: provider.messaging_system,
            SpanAttributes.MESSAGING_DESTINATION_NAME: destination,
        }
        span = self._tracer.start_span(
            f"{destination} {MessageAction.PUBLISH}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        )
        started = time.perf_counter()
        try:
            with SpanScope(span):
                headers = msg.headers
                _TRACE_PROPAGATOR.inject(headers)  # the consumer's span hangs under this one
                msg.headers = headers
                return await call_next(msg)
        except Exception as exc:
            measured[ERROR_TYPE] = type(exc).__name__
            raise
        finally:
            self._metrics.observe_publish(measured, time.perf_counter() - started, 1)

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        provider = self._provider
        headers = msg.headers
        if provider is _BATCH and msg.batch_headers:
            parent = Context()  # a batch is a trace of its own, linked to its messages'
            links = [trace.Link(found) for h in msg.batch_headers if (found := _remote_span(h))]
        elif provider is _SINGLE and "baggage" not in headers and (found := _remote_span(headers)):
            parent = trace.set_span_in_context(trace.NonRecordingSpan(found))
            links = None
        else:
            return await super().consume_scope(call_next, msg)
        destination = provider.get_consume_destination_name(msg)
        attributes = provider.get_consume_attrs_from_message(msg)
        attributes[SpanAttributes.MESSAGING_OPERATION] = MessageAction.PROCESS
        measured = {
            SpanAttributes.MESSAGING_SYSTEM: provider.messaging_system,
            MESSAGING_DESTINATION_PUBLISH_NAME: destination,
        }
        span = self._tracer.start_span(
            f"{destination} {MessageAction.PROCESS}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        # Ended by after_processed(), once the message is acked; a reply published by the
        # handler's return value hangs under it.
        self._current_span, self._origin_context = span, parent
        started = time.perf_counter()
        try:
            with SpanScope(span, end=False):
                return await call_next(msg)
        except Exception as exc:
            measured[ERROR_TYPE] = type(exc).__name__
            raise
        finally:
            count = attributes.get(SpanAttributes.MESSAGING_BATCH_MESSAGE_COUNT, 1)
            self._metrics.observe_consume(measured, time.perf_counter() - started, count)


class FleetmailNatsTelemetryMiddleware(NatsTelemetryMiddleware):
    """FastStream's NATS telemetry with reply inboxes folded into one name, only the spans
    fleetmail reads (`_LeanTelemetry`), and, given a counter, JetStream's redeliveries counted."""

    def __init__(self, *, redeliveries: metrics.Counter | None = None, **kwargs: Any) -> None:
        TelemetryMiddleware.__init__(
            self,
            settings_provider_factory=_settings_provider,
            # fleetmail's own counters count jobs; FastStream's durations are enough here.
            include_messages_counters=False,
            **kwargs,
        )
        self._redeliveries = redeliveries

    def __call__(self, msg: Any | None, /, *, context: Any) -> BaseTelemetryMiddleware[Any]:
        return _LeanTelemetry(
            msg,
            tracer=self._tracer,
            metrics_container=self._metrics,
            settings_provider_factory=self._settings_provider_factory,
            context=context,
            redeliveries=self._redeliveries,
        )


def redelivery_counter(meter: metrics.Meter) -> metrics.Counter:
    """`fleetmail.consumer.redeliveries`: JetStream messages delivered more than once."""
    return meter.create_counter(
        "fleetmail.consumer.redeliveries",
        unit="{message}",
        description="JetStream messages delivered more than once",
    )


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
