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

The FastStream middleware lives in `telemetry_bus` (reply inboxes folded into one name), the
polled gauges in `gauges`, `SpanScope` in `spans`; all are re-exported here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from .gauges import ConsumerLag, PolledGauge, gauges_polled
from .settings import CommonSettings
from .spans import SpanScope
from .telemetry_bus import FleetmailNatsTelemetryMiddleware, normalise_subject, redelivery_counter

__all__ = [
    "ConsumerLag",
    "PolledGauge",
    "SpanScope",
    "Telemetry",
    "configure_telemetry",
    "gauges_polled",
    "normalise_subject",
]

log = logging.getLogger(__name__)

METER_NAME = "fleetmail"
# Latencies from milliseconds (a cached token) to minutes (a job deferred and retried).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


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
