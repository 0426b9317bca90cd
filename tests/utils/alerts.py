"""Alerts as administrators and devices see them, and the notifier's positive sign that it
has read every event published so far."""

from __future__ import annotations

import httpx
import nats
from fleetmail_contracts import streams


async def alerts(admin: httpx.AsyncClient, tenant_id: str, **params) -> list[dict]:
    """The tenant's alerts in the administrators' list (open ones unless `include_resolved`)."""
    response = await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def device_feed(panel: httpx.AsyncClient) -> list[dict]:
    """The device's [Information] screen."""
    response = await panel.get("/v1/device/information")
    assert response.status_code == 200, response.text
    return response.json()


async def notifier_caught_up(stack) -> bool:
    """The positive sign a "nothing more happened" check waits for: the notifier's consumers
    have nothing left to deliver or to acknowledge, so every event published so far has
    been processed (and a redelivery would show here until it is)."""
    client = await nats.connect(stack.nats_url)
    try:
        js = client.jetstream()
        for stream, durable in (streams.NOTIFIER_TOKENS_CONSUMER, streams.NOTIFIER_MAIL_CONSUMER):
            info = await js.consumer_info(stream, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await client.close()
