"""token-service's spans and metrics (OpenTelemetry's global API: no-ops until the service's
`configure_telemetry` installs a provider)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from opentelemetry import metrics, trace

from .adapters.grants import GrantStore

tracer = trace.get_tracer("fleetmail.token-service")
meter = metrics.get_meter("fleetmail.token-service")

TOKEN_REQUESTS = meter.create_counter(
    "fleetmail.token.requests",
    unit="{request}",
    description="Access-token requests answered, by outcome",
)
REFRESHES = meter.create_counter(
    "fleetmail.token.refreshes",
    unit="{call}",
    description="Calls to a provider's token endpoint, by provider, flow and result",
)


class GrantGauges:
    """Grants by provider and status, and each tenant's soonest predicted grant death, read
    from MongoDB every few seconds (gauge callbacks cannot wait on the database)."""

    def __init__(self, grants: GrantStore, clock: Callable[[], datetime]) -> None:
        self.grants = grants
        self.clock = clock
        self.by_status: Counter[tuple[str, str]] = Counter()
        self.soonest_death: dict[tuple[str, str], datetime] = {}
        meter.create_observable_gauge(
            "fleetmail.grants",
            callbacks=[lambda _o: self._by_status()],
            unit="{grant}",
            description="Grants by provider and status",
        )
        meter.create_observable_gauge(
            "fleetmail.grant.time_to_predicted_death",
            callbacks=[lambda _o: self._to_death()],
            unit="s",
            description="Seconds until the tenant's first grant is predicted to die without use",
        )

    def _by_status(self) -> list[metrics.Observation]:
        return [
            metrics.Observation(count, {"provider": provider, "status": status})
            for (provider, status), count in list(self.by_status.items())
        ]

    def _to_death(self) -> list[metrics.Observation]:
        now = self.clock()
        return [
            metrics.Observation(
                max(0.0, (at - now).total_seconds()), {"tenant": tenant, "provider": provider}
            )
            for (tenant, provider), at in list(self.soonest_death.items())
        ]

    async def poll(self) -> None:
        by_status: Counter[tuple[str, str]] = Counter()
        soonest: dict[tuple[str, str], datetime] = {}
        for grant in await self.grants.summary():
            provider, status = str(grant.get("provider")), str(grant.get("status"))
            by_status[(provider, status)] += 1
            death = grant.get("predicted_death_at")
            if status == "active" and isinstance(death, datetime):
                if death.tzinfo is None:
                    death = death.replace(tzinfo=self.clock().tzinfo)
                key = (str(grant.get("tenant_id")), provider)
                if key not in soonest or death < soonest[key]:
                    soonest[key] = death
        # Statuses that emptied report 0 rather than vanishing from the dashboard.
        for key in self.by_status:
            by_status.setdefault(key, 0)
        self.by_status, self.soonest_death = by_status, soonest
