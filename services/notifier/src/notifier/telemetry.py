"""notifier's spans and metrics (OpenTelemetry's global API: no-ops until the service's
`configure_telemetry` installs a provider)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from fleetmail_contracts.alerts import AlertView
from fleetmail_runtime.telemetry import PolledGauge, SpanScope
from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .ports import AlertStore

tracer = trace.get_tracer("fleetmail.notifier")
meter = metrics.get_meter("fleetmail.notifier")
_PROPAGATOR = TraceContextTextMapPropagator()

ALERT_TRANSITIONS = meter.create_counter(
    "fleetmail.alerts.transitions",
    unit="{alert}",
    description="Alerts raised and resolved, by cause",
)


def observing(event: Mapping[str, Any], headers: Mapping[str, str] | None) -> SpanScope:
    """A span for one event of a batch, a child of the span that published it: the notifier
    reads events in batches, and this keeps each job's trace whole."""
    return SpanScope(
        tracer.start_span(
            f"notifier observe {event.get('kind', 'event')}",
            context=_PROPAGATOR.extract(dict(headers or {})),
            kind=trace.SpanKind.CONSUMER,
            attributes={"fleetmail.tenant": str(event.get("tenant_id") or "")},
        )
    )


def count_transition(alert: AlertView, transition: str) -> None:
    ALERT_TRANSITIONS.add(
        1, {"tenant": alert.tenant_id, "cause": alert.cause.value, "transition": transition}
    )


class OpenAlertGauge:
    """Live (open or acknowledged) alerts by tenant, cause, severity and state."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self.gauge = PolledGauge(
            meter,
            "fleetmail.alerts.open",
            unit="{alert}",
            description="Alerts open or acknowledged and not yet resolved",
            zero_when_gone=True,
        )

    async def poll(self) -> None:
        counts: Counter[tuple[str, str, str, str]] = Counter(
            (a.tenant_id, a.cause, a.severity, a.state) for a in await self.store.live_summary()
        )
        self.gauge.set(
            ({"tenant": t, "cause": c, "severity": s, "state": st}, n) for (t, c, s, st), n in counts.items()
        )
