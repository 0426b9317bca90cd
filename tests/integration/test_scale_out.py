"""Scale-out proven locally: a 3-node NATS JetStream cluster on loopback (every stream and
bucket replicated three times), two replicas of each worker service, 1,000 jobs; one NATS
node and one mail-service replica are killed mid-run, and every job is still delivered once.

A thousand jobs keep both replicas' batches full when the crashes come, with three quarters
of the run still ahead; 2,000 proved no more and cost twice the CPU (most of it the cluster's
replication), which the other test files running beside this one were short of.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from fleetmail_contracts.streams import EVENTS_STREAM, JOBS_STREAM
from fleetmail_devkit.probes import (
    UNPACED_ENV,
    lift_rate_limit,
    queue_jobs,
    tenant_with_administrator_grant,
    wait_for_delivered,
)
from fleetmail_devkit.stack import Stack, temporary_stack

pytestmark = pytest.mark.own_stack

JOBS = 1000
IN_FLIGHT = 16  # mail-service's fetch batch: the most jobs a killed replica can hold


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Stack]:
    async with temporary_stack(
        "fleetmail-cluster-",
        timeout_s=90,
        nats_nodes=3,
        extra_env={
            "FLEETMAIL_STREAM_REPLICAS": "3",
            "FLEETMAIL_METRICS_PORT": "0",
            "FLEETMAIL_MAIL_ACK_WAIT_S": "6",
            # 1,000 jobs as one mailbox: at Exchange's 30 a minute, half an hour.
            **UNPACED_ENV,
        },
    ) as stack:
        await lift_rate_limit(stack)
        yield stack


@pytest.mark.timeout(480)  # its own deadlines: 120 s to a quarter delivered, then 300 s for the rest
async def test_1000_jobs_survive_a_dead_nats_node_and_a_dead_mail_replica(cluster: Stack) -> None:
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

        await wait_for_delivered(stack, http, tag, lambda seen: seen.total() >= JOBS // 4, 120)
        # Crashes, not shutdowns: a NATS node (not the one the probes use) and a mail replica.
        victims = [stack.part("nats-2"), stack.part("mail-service-2")]
        for victim in victims:
            assert victim.process is not None
            victim.process.send_signal(signal.SIGKILL)
        for victim in victims:
            assert victim.process is not None
            await victim.process.wait()
            await stack.stop_part(victim)

        seen = await wait_for_delivered(stack, http, tag, lambda seen: expected <= set(seen), 300, 0.5)
    assert set(seen) == expected, f"lost {len(expected - set(seen))} of {JOBS} jobs"
    # The ledger turns every redelivery after a lost acknowledgement (the dead node) into an
    # ack without a send. The one window SMTP cannot close — the server accepted DATA, the
    # replica died before its ledger write — holds at most the jobs it had in flight.
    duplicates = [m for m, n in seen.items() if n > 1]
    assert len(duplicates) <= IN_FLIGHT, duplicates
