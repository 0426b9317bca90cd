"""A batch pull subscriber on the product's broker gets every message at once, even when its
fetches run out of time mid-batch (runtime/nats_fetch.py: nats-py raises two kinds of
timeout there and FastStream caught one, dropping the batch until JetStream's ack wait)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats
from faststream.nats import ConsumerConfig, JStream, PullSub
from fleetmail_runtime.bus import make_broker
from fleetmail_runtime.settings import CommonSettings

MESSAGES = 2000
ACK_WAIT_S = 30


async def test_a_batch_subscriber_gets_every_message_when_its_fetches_time_out_mid_batch(stack) -> None:
    name = f"fetch{uuid.uuid4().hex[:8]}"  # a stream of its own on the session's nats-server
    broker = make_broker(CommonSettings(nats_url=stack.nats_url), "fetch-test")
    seen: set[int] = set()
    all_seen = asyncio.Event()

    # A batch window of 10 ms: with messages trickling in, most batches are partial and
    # their last fetch runs out of time — the path where nats-py's other timeout came out.
    @broker.subscriber(
        f"{name}.>",
        stream=JStream(name.upper(), subjects=[f"{name}.>"]),
        durable=name,
        pull_sub=PullSub(batch_size=256, timeout=0.01, batch=True),
        config=ConsumerConfig(ack_wait=ACK_WAIT_S),
    )
    async def handle(numbers: list[int]) -> None:
        seen.update(numbers)
        if len(seen) == MESSAGES:
            all_seen.set()

    client = await nats.connect(stack.nats_url)
    js = client.jetstream()
    try:
        await broker.start()
        for n in range(MESSAGES):
            await js.publish(f"{name}.n", str(n).encode())
            if n % 7 == 0:
                await asyncio.sleep(0.003)
        with contextlib.suppress(TimeoutError):  # a third of the ack wait: no redelivery can help
            await asyncio.wait_for(all_seen.wait(), 10)
        missing = MESSAGES - len(seen)
        assert missing == 0, (
            f"{missing} of {MESSAGES} messages were fetched and dropped: JetStream hands them out "
            f"again only after the {ACK_WAIT_S} s ack wait"
        )
    finally:
        await broker.stop()
        with contextlib.suppress(Exception):
            await js.delete_stream(name.upper())
        await client.close()
