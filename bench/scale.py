"""Scale-out: end-to-end throughput with two replicas of each worker service against one, on
the same stack in the same run. On two cores little gain is expected; the figure shows that
the design does not lose throughput to coordination (shared consumers, leases)."""

from __future__ import annotations

import httpx
from fleetmail_devkit.stack import Stack

from .figures import Figure
from .mail import devices_of_new_tenant, e2e_rate
from .telemetry import DEVICES, PER_DEVICE

WORKERS = ("token-service", "mail-service", "notifier")


async def run(stack: Stack) -> list[Figure]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
        one = await e2e_rate(stack, http, await devices_of_new_tenant(stack, http, DEVICES), PER_DEVICE)
        added = [await stack.add_replica(service) for service in WORKERS]
        try:
            two = await e2e_rate(stack, http, await devices_of_new_tenant(stack, http, DEVICES), PER_DEVICE)
        finally:
            for part in added:
                await stack.stop_part(part)
    print(f"  one replica each: {one:.1f} jobs/s, two: {two:.1f} jobs/s")
    return [Figure("scale.jobs_per_s_2_replicas_vs_1", two / one, "ratio", "one_replica_jobs_per_s", one)]
