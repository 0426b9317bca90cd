"""mail-service's spans and metrics (OpenTelemetry's global API: no-ops until the service's
`configure_telemetry` installs a provider). Labels: function, provider, tenant — bounded by
the device's twelve functions, two providers and the fleet's tenants."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fleetmail_runtime.telemetry import PolledGauge
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
ATTACHMENTS_SWEPT = meter.create_counter(
    "fleetmail.attachments.swept",
    unit="{object}",
    description="Objects the attachment sweep removed: expired dead letters' documents and orphans",
)


class AttachmentStoreGauges:
    """The attachment store's use and its limit (`fleetmail_attachment_store_bytes`,
    `fleetmail_attachment_store_limit_bytes`), read from JetStream every metrics poll."""

    def __init__(self, used_bytes: Callable[[], Awaitable[int]], max_bytes: int) -> None:
        self.used_bytes = used_bytes
        self.max_bytes = max_bytes
        self.used = PolledGauge(
            meter,
            "fleetmail.attachment_store",
            unit="By",
            description="Bytes the attachments object store takes in JetStream",
        )
        self.limit = PolledGauge(
            meter,
            "fleetmail.attachment_store.limit",
            unit="By",
            description="The attachments object store's size limit (FLEETMAIL_ATTACHMENTS_MAX_BYTES)",
        )

    async def poll(self) -> None:
        self.used.set([({}, await self.used_bytes())])
        if self.max_bytes > 0:
            self.limit.set([({}, self.max_bytes)])
