"""token-service's spans and metrics (OpenTelemetry's global API: no-ops until the service's
`configure_telemetry` installs a provider)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from fleetmail_runtime.telemetry import PolledGauge
from opentelemetry import metrics, trace

from .adapters.grants import MongoGrantStore

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
GRANTS_DELETED = meter.create_counter(
    "fleetmail.token.grants_deleted",
    unit="{grant}",
    description="Grants deleted, by principal kind and reason (requested, user_logged_out, "
    "auto_reset, idle: a login user's token unused for the tenant's user_token_idle_days)",
)


class GrantGauges:
    """Grants by provider and status, and each tenant's soonest predicted grant death, read
    from MongoDB every few seconds."""

    def __init__(self, grants: MongoGrantStore, clock: Callable[[], datetime]) -> None:
        self.grants = grants
        self.clock = clock
        self.by_status = PolledGauge(
            meter,
            "fleetmail.grants",
            unit="{grant}",
            description="Grants by provider and status",
            zero_when_gone=True,
        )
        self.to_death = PolledGauge(
            meter,
            "fleetmail.grant.time_to_predicted_death",
            unit="s",
            description="Seconds until the tenant's first grant is predicted to die without use",
        )

    async def poll(self) -> None:
        now = self.clock()
        by_status: Counter[tuple[str, str]] = Counter()
        soonest: dict[tuple[str, str], datetime] = {}
        for grant in await self.grants.summary():
            provider, status = str(grant.get("provider")), str(grant.get("status"))
            by_status[(provider, status)] += 1
            death = grant.get("predicted_death_at")
            if status == "active" and isinstance(death, datetime):
                if death.tzinfo is None:
                    death = death.replace(tzinfo=now.tzinfo)
                key = (str(grant.get("tenant_id")), provider)
                soonest[key] = min(death, soonest.get(key, death))
        self.by_status.set(({"provider": p, "status": s}, n) for (p, s), n in by_status.items())
        self.to_death.set(
            ({"tenant": t, "provider": p}, max(0.0, (at - now).total_seconds()))
            for (t, p), at in soonest.items()
        )
