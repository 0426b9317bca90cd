"""Scale-out: end-to-end throughput with two replicas of each worker service against one, on
the same stack in the same run. On two cores little gain is expected; the figure shows that
the design does not lose throughput to coordination (shared consumers, leases)."""

from __future__ import annotations

import httpx
from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant
from fleetmail_devkit.stack import Stack

from .figures import Figure
from .telemetry import DEVICES, e2e_rate

WORKERS = ("token-service", "mail-service", "notifier")


async def devices_of_new_tenant(stack: Stack, http: httpx.AsyncClient) -> list[tuple[str, str]]:
    principal = await tenant_with_administrator_grant(stack, http)
    return [await register_device(stack, principal.tenant_id) for _ in range(DEVICES)]


async def run(stack: Stack) -> list[Figure]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
        one = await e2e_rate(stack, http, await devices_of_new_tenant(stack, http))
        added = [await stack.add_replica(service) for service in WORKERS]
        try:
            two = await e2e_rate(stack, http, await devices_of_new_tenant(stack, http))
        finally:
            for part in added:
                await stack.stop_part(part)
    print(f"  one replica each: {one:.1f} jobs/s, two: {two:.1f} jobs/s")
    return [Figure("scale.jobs_per_s_2_replicas_vs_1", two / one, "ratio", "one_replica_jobs_per_s", one)]
