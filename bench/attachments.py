"""The attachment lifecycle: what the Object Store still holds after 1,000 jobs, each with a
100 KB attachment, were submitted at job-gateway's HTTP API and delivered (target: 0 bytes,
everything delivered is gone). The baseline is the most the store held above its starting
size while those jobs ran, sampled in the same run: documents do pass through the store, and
the figure says how much of that stays."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import nats
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant
from fleetmail_devkit.stack import Stack

from .figures import Figure

JOBS = 1000
DEVICES = 8
ATTACHMENT_BYTES = 100 * 1024
STREAM = f"OBJ_{ATTACHMENTS_BUCKET}"


async def stored_bytes(stack: Stack) -> int:
    client = await nats.connect(stack.nats_url)
    try:
        return int((await client.jetstream().stream_info(STREAM)).state.bytes or 0)
    finally:
        await client.close()


async def sent(stack: Stack, tenant_id: str) -> int:
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as admin:
        summary = (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs/summary")).json()
    return int(summary["counts"].get("sent", 0))


async def run(stack: Stack) -> list[Figure]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
        tenant_id = (await tenant_with_administrator_grant(stack, http)).tenant_id
    devices = [await register_device(stack, tenant_id) for _ in range(DEVICES)]
    before = await stored_bytes(stack)

    async def submit(device_id: str, secret: str) -> None:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, secret), timeout=60
        ) as panel:
            for n in range(JOBS // DEVICES):
                job = {"to": [f"r{n}@fabrikam.example"], "subject": f"Scan {n}"}
                files = {"files": ("scan.pdf", os.urandom(ATTACHMENT_BYTES), "application/pdf")}
                while True:
                    response = await panel.post("/v1/jobs", data={"job": json.dumps(job)}, files=files)
                    if response.status_code != 429:  # past the device's rate: wait as told
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                response.raise_for_status()

    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        client = await nats.connect(stack.nats_url)
        try:
            while not done.is_set():
                info = await client.jetstream().stream_info(STREAM)
                peak = max(peak, int(info.state.bytes or 0) - before)
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(submit(*device) for device in devices))
    # A job shows as sent once its documents are deleted: wait for every `sent`.
    for _ in range(600):
        if await sent(stack, tenant_id) >= JOBS:
            break
        await asyncio.sleep(0.5)
    else:
        raise RuntimeError(f"only {await sent(stack, tenant_id)} of {JOBS} jobs were sent")
    done.set()
    await sampler
    left = max(0, await stored_bytes(stack) - before)
    print(
        f"  attachment store: {before} bytes before, at most {before + peak} while the jobs ran, "
        f"{before + left} after {JOBS} delivered jobs ({JOBS * ATTACHMENT_BYTES} uploaded)"
    )
    return [
        Figure(
            "gateway.attachment_store_bytes_after_1000_jobs",
            float(left),
            "bytes",
            "attachment_store_peak_bytes_during_the_run",
            float(peak),
        )
    ]
