"""The notifier's side of the bus: alert events out, questions to token-service."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetmail_contracts import streams
from fleetmail_contracts.alerts import AlertRaised, AlertResolved, alert_event_subject
from fleetmail_contracts.credentials import WEBHOOK_SECRET_SUBJECT, WebhookSecretReply, WebhookSecretRequest
from fleetmail_contracts.tokens import GRANT_STATUS_SUBJECT, GrantStatusReply, GrantStatusRequest
from fleetmail_runtime.bus import Bus

from ..ports import Clock


class BusAlertPublisher:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def publish(self, event: AlertRaised | AlertResolved) -> None:
        await self._bus.publish(
            event, alert_event_subject(event.kind), stream=streams.EVENTS_STREAM, msg_id=event.event_id
        )


class BusTokenService:
    """token-service over request/reply. Webhook secrets are held for `secret_ttl` (a burst of
    notices to one tenant asks once; a changed secret is used within that time)."""

    def __init__(self, bus: Bus, clock: Clock, *, secret_ttl: timedelta = timedelta(seconds=30)) -> None:
        self._bus = bus
        self._clock = clock
        self._secret_ttl = secret_ttl
        self._secrets: dict[str, tuple[str | None, datetime]] = {}

    async def grant_status(self, tenant_id: str) -> GrantStatusReply:
        reply: GrantStatusReply = await self._bus.request(
            GrantStatusRequest(tenant_id=tenant_id), GRANT_STATUS_SUBJECT, GrantStatusReply
        )
        return reply

    async def webhook_secret(self, tenant_id: str) -> str | None:
        now = self._clock()
        cached = self._secrets.get(tenant_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        reply: WebhookSecretReply = await self._bus.request(
            WebhookSecretRequest(tenant_id=tenant_id), WEBHOOK_SECRET_SUBJECT, WebhookSecretReply
        )
        self._secrets[tenant_id] = (reply.secret, now + self._secret_ttl)
        return reply.secret
