"""mail-service's spans and metrics (OpenTelemetry's global API: no-ops until the service's
`configure_telemetry` installs a provider). Labels: function, provider, tenant — bounded by
the device's twelve functions, two providers and the fleet's tenants."""

from __future__ import annotations

from opentelemetry import metrics, trace

tracer = trace.get_tracer("fleetmail.mail-service")
meter = metrics.get_meter("fleetmail.mail-service")

JOBS_SENT = meter.create_counter("fleetmail.jobs.sent", unit="{job}", description="Jobs delivered")
JOBS_DEFERRED = meter.create_counter(
    "fleetmail.jobs.deferred", unit="{job}", description="Delivery attempts deferred for a retry"
)
JOBS_FAILED = meter.create_counter(
    "fleetmail.jobs.failed", unit="{job}", description="Jobs that failed for good, by reason"
)
JOBS_PARKED = meter.create_counter(
    "fleetmail.jobs.parked", unit="{job}", description="Jobs parked until their user signs in"
)
DELIVERY_LATENCY = meter.create_histogram(
    "fleetmail.delivery.latency",
    unit="s",
    description="From the job's submission at the gateway to the SMTP server's acceptance",
)
