"""1,000 jobs as one mailbox through Microsoft Graph, against the Graph emulator's real
limits (4 requests of the app and mailbox at once, 10,000 per 10 minutes, 429 with
Retry-After): every job delivered exactly once, none failed or dead-lettered for a 429."""

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from fleetmail_devkit.probes import device_panel, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.jobs import submit


@pytest.mark.timeout(400)
async def test_a_thousand_jobs_from_twenty_devices_as_one_mailbox_through_graph(
    stack, admin, emulator_http
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http, transport="graph")
    tenant_id, address = principal.tenant_id, principal.address
    async with AsyncExitStack() as devices:
        panels = [await devices.enter_async_context(device_panel(stack, tenant_id)) for _ in range(20)]
        job = {"function": "scan_to_email", "to": ["boss@fabrikam.example"]}
        at_once = asyncio.Semaphore(20)

        async def one(i: int) -> str:
            async with at_once:
                return await submit(panels[i % 20], job)

        job_ids = await asyncio.gather(*(one(i) for i in range(1000)))

        async def all_sent() -> bool:
            counts = (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs/summary")).json()["counts"]
            assert counts == {"sent": 1000}, counts
            return True

        await eventually(all_sent, within=300, every=1.0, what="1,000 jobs sent through Graph")
    assert len(set(job_ids)) == 1000
    messages = (
        await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages", params={"sender": address})
    ).json()
    assert {m["auth_mechanism"] for m in messages} == {"GRAPH"}
    delivered = Counter(m["message_id"] for m in messages)
    assert len(delivered) == 1000 and set(delivered.values()) == {1}
    assert {f"<{job_id}@fleetmail>" for job_id in job_ids} == set(delivered)
    dead = (await admin.get(f"/v1/admin/tenants/{tenant_id}/dead-letters")).json()
    assert dead["dead_letters"] == [], dead
