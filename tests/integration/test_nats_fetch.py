"""A batch pull subscriber on the product's broker gets every message at once, even when its
fetches run out of time mid-batch (runtime/nats_fetch.py: nats-py raises two kinds of
timeout there and FastStream caught one, dropping the batch until JetStream's ack wait)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import nats
from faststream.nats import ConsumerConfig, JStream, PullSub
from fleetmail_devkit.ports import free_port, port_open
from fleetmail_runtime.bus import make_broker
from fleetmail_runtime.settings import CommonSettings

MESSAGES = 2000
ACK_WAIT_S = 30


async def test_a_batch_subscriber_gets_every_message_when_its_fetches_time_out_mid_batch() -> None:
    store = Path(tempfile.mkdtemp(prefix="fleetmail-fetch-"))
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "nats-server"),
        "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    broker = make_broker(CommonSettings(nats_url=f"nats://127.0.0.1:{port}"), "fetch-test")
    seen: set[int] = set()
    all_seen = asyncio.Event()

    # A batch window of 10 ms: with messages trickling in, most batches are partial and
    # their last fetch runs out of time — the path where nats-py's other timeout came out.
    @broker.subscriber(
        "probe.>",
        stream=JStream("PROBE", subjects=["probe.>"]),
        durable="probe",
        pull_sub=PullSub(batch_size=256, timeout=0.01, batch=True),
        config=ConsumerConfig(ack_wait=ACK_WAIT_S),
    )
    async def handle(numbers: list[int]) -> None:
        seen.update(numbers)
        if len(seen) == MESSAGES:
            all_seen.set()

    client = None
    try:
        for _ in range(100):
            if port_open(port):
                break
            await asyncio.sleep(0.05)
        await broker.start()
        client = await nats.connect(f"nats://127.0.0.1:{port}")
        js = client.jetstream()
        for n in range(MESSAGES):
            await js.publish("probe.n", str(n).encode())
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
        if client is not None:
            await client.close()
        server.terminate()
        await server.wait()
        shutil.rmtree(store, ignore_errors=True)
