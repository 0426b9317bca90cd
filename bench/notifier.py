"""notifier benchmark: token and mail events processed per second with alert dedupe on,
against a raw JetStream pull + ack of the same events in the same run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import nats
from fleetmail_contracts.streams import EVENTS_STREAM
from fleetmail_devkit.stack import Stack
from nats.js.api import ConsumerConfig, DeliverPolicy

from .figures import Figure

EVENTS = 20_000
TENANTS = 20


def event_stream(tag: str) -> list[tuple[str, bytes]]:
    """Half the tenants have a dead administrator grant (every job fails on it: the dedupe
    case), the other half are healthy (refreshes and sends)."""
    now = datetime.now(UTC).isoformat()
    found = []
    for n in range(EVENTS):
        tenant = f"{tag}-{n % TENANTS}"
        body: dict[str, object]
        if n % TENANTS < TENANTS // 2:
            subject = "fleetmail.events.v1.mail.failed"
            body = {"kind": "failed", "reason_code": "reauthorization_required", "detail": "grant dead"}
        elif n % 2:
            subject, body = (
                "fleetmail.events.v1.mail.sent",
                {"kind": "sent", "sender": f"admin@{tenant}.example"},
            )
        else:
            subject = "fleetmail.events.v1.tokens.refreshed"
            principal = {"tenant_id": tenant, "kind": "administrator", "address": f"admin@{tenant}.example"}
            body = {"kind": "refreshed", "principal": principal, "provider": "microsoft", "rotated": True}
        body |= {"event_id": uuid.uuid4().hex, "occurred_at": now}
        if "principal" not in body:
            body |= {
                "job_id": f"{tag}-{n}",
                "tenant_id": tenant,
                "device_id": "d",
                "function": "scan_to_email",
            }
        found.append((subject, json.dumps(body).encode()))
    return found


async def publish_all(js, stream: list[tuple[str, bytes]]) -> None:
    for start in range(0, len(stream), 256):
        await asyncio.gather(
            *(js.publish(s, b, stream=EVENTS_STREAM) for s, b in stream[start : start + 256])
        )


async def pending(js) -> int:
    total = 0
    for durable in ("notifier-mail", "notifier-tokens"):
        info = await js.consumer_info(EVENTS_STREAM, durable)
        total += info.num_pending + info.num_ack_pending
    return total


async def drained(js, seconds: float = 90) -> None:
    """Until the notifier's consumers have nothing waiting or unacknowledged."""
    for _ in range(int(seconds * 10)):
        if not await pending(js):
            return
        await asyncio.sleep(0.1)


async def watch_progress(js) -> tuple[float, float]:
    """(when the first of the waiting events was taken, when the last one was)."""
    start = await pending(js)
    first = None
    for _ in range(60_000):  # at most 10 minutes
        left = await pending(js)
        now = time.perf_counter()
        if first is None and left < start:
            first = now
        if left == 0:
            return first or now, now
        await asyncio.sleep(0.01)
    raise RuntimeError("the notifier did not catch up within 10 minutes")


async def run(stack: Stack) -> list[Figure]:
    client = await nats.connect(stack.nats_url)
    js = client.jetstream()
    notifier = stack.part("notifier")
    try:
        # Only this benchmark's events: what the benchmarks before left (events still in
        # flight, or handed to a fetch as the notifier stopped, due again after the ack
        # wait) is taken first, untimed.
        await drained(js)
        await stack.stop_part(notifier)
        tag = f"nb-{uuid.uuid4().hex[:6]}"
        before = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        await publish_all(js, event_stream(tag))
        # The raw baseline reads exactly these events (a consumer starting at their sequence).
        durable = f"bench-raw-{uuid.uuid4().hex[:6]}"
        await js.add_consumer(
            EVENTS_STREAM,
            ConsumerConfig(
                durable_name=durable,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=before + 1,
                filter_subject="fleetmail.events.v1.>",
            ),
        )
        subscription = await js.pull_subscribe_bind(durable, stream=EVENTS_STREAM)
        started, taken = time.perf_counter(), 0
        while taken < EVENTS:
            batch = await subscription.fetch(256, timeout=5)
            await asyncio.gather(*(m.ack() for m in batch))
            taken += len(batch)
        raw = taken / (time.perf_counter() - started)
        await js.delete_consumer(EVENTS_STREAM, durable)

        # Timed from the first event the notifier acknowledges to the last, watched from
        # outside (start-up is not processing).
        watch = asyncio.create_task(watch_progress(js))
        await stack.restart_part(notifier)
        first, last = await watch
        rate = EVENTS / (last - first)
    finally:
        await client.close()
    return [Figure("notifier.events_per_s", rate, "events/s", "raw_jetstream_pull_ack_per_s", raw)]
