"""1,000 jobs as one mailbox through Microsoft Graph against a throttling Graph emulator:
every job delivered exactly once, none failed or dead-lettered for a 429.

fleetmail paces a mailbox within Graph's published limits (4 requests at once, 10,000 per 10
minutes), so against the emulator's real limits it may never meet a 429 at all. The mailbox's
limits at the emulator are shrunk, and the tenant's own sending limits set above them, so that
the provider's 429 with Retry-After is what paces the mailbox — and the emulator's record of
the 429s it answered proves they were met."""

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
    principal = await tenant_with_administrator_grant(
        stack,
        emulator_http,
        transport="graph",
        sending_limits={"concurrent_submissions": 8, "messages_per_minute": 6000},
    )
    tenant_id, address = principal.tenant_id, principal.address
    shrunk = {"api_concurrent": 2, "api_quota": 300, "api_quota_window_s": 10}
    limited = await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes", json={"address": address, "limits": shrunk}
    )
    assert limited.status_code == 200, limited.text
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
    throttled = (
        await emulator_http.get(
            f"{stack.smtp_control_url}/_emulator/api/throttled", params={"mailbox": address}
        )
    ).json()
    met = Counter(t["limit"] for t in throttled)
    assert met["concurrency"] + met["quota"] > 0, met
