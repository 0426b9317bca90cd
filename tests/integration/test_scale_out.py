"""Scale-out proven locally: a 3-node NATS JetStream cluster on loopback (every stream and
bucket replicated three times), two replicas of each worker service, 2,000 jobs; one NATS
node and one mail-service replica are killed mid-run, and every job is still delivered once.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from fleetmail_contracts.streams import EVENTS_STREAM, JOBS_STREAM
from fleetmail_devkit.probes import queue_jobs, tenant_with_administrator_grant
from fleetmail_devkit.stack import Ports, Stack

JOBS = 2000
IN_FLIGHT = 16  # mail-service's fetch batch: the most jobs a killed replica can hold


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="fleetmail-cluster-"))
    stack = Stack(
        data_dir,
        Ports.free(),
        echo=False,
        nats_nodes=3,
        extra_env={
            "FLEETMAIL_STREAM_REPLICAS": "3",
            "FLEETMAIL_METRICS_PORT": "0",
            "FLEETMAIL_MAIL_ACK_WAIT_S": "6",
        },
    )
    await stack.start(timeout_s=90)
    try:
        yield stack
    finally:
        await stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def delivered(stack: Stack, http: httpx.AsyncClient, tag: str) -> Counter[str]:
    messages = (await http.get(f"{stack.smtp_control_url}/_emulator/messages")).json()
    return Counter(m["message_id"] for m in messages if (m["subject"] or "").startswith(tag))


async def test_2000_jobs_survive_a_dead_nats_node_and_a_dead_mail_replica(cluster: Stack) -> None:
    stack = cluster
    for service in ("token-service", "mail-service", "notifier"):
        await stack.add_replica(service)
    # Every stream is replicated on all three nodes: losing one loses nothing.
    client = await nats.connect(stack.nats_urls.split(","))
    try:
        for stream in (JOBS_STREAM, EVENTS_STREAM, "KV_fleetmail_delivery_ledger"):
            info = await client.jetstream().stream_info(stream)
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2, info.cluster
    finally:
        await client.close()
    async with httpx.AsyncClient(verify=stack.ssl_context(), timeout=30, trust_env=False) as http:
        principal = await tenant_with_administrator_grant(stack, http)
        tag = f"scale-{uuid.uuid4().hex[:6]}"
        expected = await queue_jobs(stack, principal.tenant_id, JOBS, tag)

        for _ in range(1200):
            if sum((await delivered(stack, http, tag)).values()) >= JOBS // 4:
                break
            await asyncio.sleep(0.1)
        # Crashes, not shutdowns: a NATS node (not the one the probes use) and a mail replica.
        victims = [stack.part("nats-2"), stack.part("mail-service-2")]
        for victim in victims:
            assert victim.process is not None
            victim.process.send_signal(signal.SIGKILL)
        for victim in victims:
            assert victim.process is not None
            await victim.process.wait()
            await stack.stop_part(victim)

        seen: Counter[str] = Counter()
        for _ in range(600):
            seen = await delivered(stack, http, tag)
            if expected <= set(seen):
                break
            await asyncio.sleep(0.5)
    assert set(seen) == expected, f"lost {len(expected - set(seen))} of {JOBS} jobs"
    # The ledger turns every redelivery after a lost acknowledgement (the dead node) into an
    # ack without a send. The one window SMTP cannot close — the server accepted DATA, the
    # replica died before its ledger write — holds at most the jobs it had in flight.
    duplicates = [m for m, n in seen.items() if n > 1]
    assert len(duplicates) <= IN_FLIGHT, duplicates
