"""job-gateway's spans and metrics (OpenTelemetry's global API: no-ops until the service's
`configure_telemetry` installs a provider)."""

from __future__ import annotations

from opentelemetry import metrics, trace

tracer = trace.get_tracer("fleetmail.job-gateway")
meter = metrics.get_meter("fleetmail.job-gateway")

JOBS_RECEIVED = meter.create_counter(
    "fleetmail.jobs.received",
    unit="{job}",
    description="Jobs queued at the gateway (after JetStream's acknowledgement), by function, "
    "provider, tenant and channel (http or smtp)",
)
JOBS_REFUSED = meter.create_counter(
    "fleetmail.jobs.refused",
    unit="{job}",
    description="Submissions refused at the door, by reason (the problem type) and channel",
)
