"""mail-service benchmarks: delivery rate vs raw aiosmtplib, the whole path, memory per attachment."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiosmtplib
import httpx
import nats
from fleetmail_contracts.jobs import AttachmentRef, SendScanToEmail
from fleetmail_contracts.streams import (
    ATTACHMENTS_BUCKET,
    GATEWAY_STATUS_CONSUMER,
    NOTIFIER_MAIL_CONSUMER,
)
from fleetmail_devkit.fleet import sample_pdf
from fleetmail_devkit.probes import (
    queue_jobs,
    register_device,
    request_tokens,
    tenant_with_administrator_grant,
)
from fleetmail_devkit.stack import Stack
from mail_service.domain.compose import compose

from .figures import Figure
from .memory import RssSampler

JOBS = 1000
ROUNDS = 2
# The durable consumers of mail events other than mail-service's own work.
MAIL_EVENT_CONSUMERS = (GATEWAY_STATUS_CONSUMER, NOTIFIER_MAIL_CONSUMER)
CONNECTIONS = 3  # Exchange takes 3 of a mailbox in submission at once; mail-service keeps to it
BODY = "Scanned document attached.\n" * 40
ATTACHMENT_MB = 25


async def accepted(stack: Stack, http: httpx.AsyncClient) -> int:
    return int((await http.get(f"{stack.smtp_control_url}/_emulator/stats")).json()["accepted"])


async def wait_for_accepted(
    stack: Stack, http: httpx.AsyncClient, target: int, timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    while await accepted(stack, http) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {await accepted(stack, http)} of {target} messages arrived")
        await asyncio.sleep(0.05)


async def raw_smtp_rate(stack: Stack, sender: str, token: str) -> float:
    """aiosmtplib straight to the SMTP emulator: XOAUTH2, a fixed token, the same concurrency,
    and the same messages mail-service sends for the queued jobs (composed by its own code)."""
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    clients = []
    for _ in range(CONNECTIONS):
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=stack.ports.smtp_starttls, start_tls=True, tls_context=context
        )
        await client.connect()
        await client.auth_xoauth2(sender, token)
        clients.append(client)
    tag = f"raw-{uuid.uuid4().hex[:6]}"
    messages = []
    for n in range(JOBS // CONNECTIONS * CONNECTIONS):
        job = SendScanToEmail(
            job_id=f"{tag}-{n:04d}",
            tenant_id="raw",
            device_id="probe-device",
            submitted_at=datetime.now(UTC),
            to=("recipient@fabrikam.example",),
            subject=f"{tag} {n}",
            body=BODY,
        )
        message, recipients = compose(job, job.function, sender, [], datetime.now(UTC))
        messages.append((await message.to_bytes(), recipients))

    async def send(client: aiosmtplib.SMTP, batch: list[tuple[bytes, list[str]]]) -> None:
        for data, recipients in batch:
            await client.sendmail(sender, recipients, data)

    started = time.perf_counter()
    await asyncio.gather(*(send(c, messages[i::CONNECTIONS]) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return len(messages) / elapsed


@asynccontextmanager
async def event_consumers_paused(stack: Stack) -> AsyncIterator[None]:
    """Pause the durable consumers of mail events (JetStream consumer pause, nats-server 2.11+):
    job-gateway's status projection and the notifier then catch up afterwards."""
    client = await nats.connect(stack.nats_url)
    try:
        js = client.jetstream()
        until = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for stream, consumer in MAIL_EVENT_CONSUMERS:
            await js.pause_consumer(stream, consumer, until)
        try:
            yield
        finally:
            for stream, consumer in MAIL_EVENT_CONSUMERS:
                await js.resume_consumer(stream, consumer)
    finally:
        await client.close()


async def queued_delivery_rate(
    stack: Stack, http: httpx.AsyncClient, tenant_id: str, consumers_paused: bool
) -> float:
    """JOBS jobs queued while no mail-service runs, then one mail-service process started:
    jobs per second until the SMTP server has them all."""
    for part in [p for p in stack.parts if p.name.startswith("mail-service")]:
        await stack.stop_part(part)
    await queue_jobs(stack, tenant_id, JOBS, f"bench-{uuid.uuid4().hex[:6]}", BODY)
    before = await accepted(stack, http)
    async with event_consumers_paused(stack) if consumers_paused else contextlib.nullcontext():
        await stack.add_replica("mail-service")
        started = time.perf_counter()
        await wait_for_accepted(stack, http, before + JOBS)
        return JOBS / (time.perf_counter() - started)


async def delivery(stack: Stack, http: httpx.AsyncClient) -> tuple[list[Figure], float]:
    """mail-service's delivery against raw aiosmtplib, alternating (raw, mail-service) over
    ROUNDS rounds so a drift of the machine favours neither.

    `mail.delivery_vs_raw` measures what the issue names, one mail-service process delivering
    (consume, sender, cached token, MIME, SMTP, ledger, ack, events): the two services that
    consume its events are paused meanwhile, as the raw baseline has none, and catch up
    after. On two cores their share is not small, so the same delivery with them running is
    reported beside it (`…_with_event_consumers`)."""
    principal = await tenant_with_administrator_grant(stack, http)
    token = (await request_tokens(stack, principal, 1))[0].access_token
    assert token is not None
    raws: list[float] = []
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(ROUNDS):
        raws.append(await raw_smtp_rate(stack, principal.address, token))
        for paused in (True, False):
            rates[paused].append(await queued_delivery_rate(stack, http, principal.tenant_id, paused))
    raw = sum(raws) / ROUNDS
    alone, beside = sum(rates[True]) / ROUNDS, sum(rates[False]) / ROUNDS
    baseline = "raw_aiosmtplib_msgs_per_s"
    return [
        Figure("mail.delivery_jobs_per_s", alone, "jobs/s", baseline, raw),
        Figure("mail.delivery_vs_raw", alone / raw, "ratio", baseline, raw),
        Figure("mail.delivery_jobs_per_s_with_event_consumers", beside, "jobs/s", baseline, raw),
        Figure("mail.delivery_vs_raw_with_event_consumers", beside / raw, "ratio", baseline, raw),
    ], raw


async def devices_of_new_tenant(stack: Stack, http: httpx.AsyncClient, count: int) -> list[tuple[str, str]]:
    """A new tenant with an administrator grant, and `count` registered devices."""
    principal = await tenant_with_administrator_grant(stack, http)
    return [await register_device(stack, principal.tenant_id) for _ in range(count)]


async def e2e_rate(
    stack: Stack, http: httpx.AsyncClient, devices: list[tuple[str, str]], per_device: int
) -> float:
    """Scans submitted at job-gateway's HTTP API by every device at once, until the SMTP
    server has them all: jobs per second over the whole path."""
    before = await accepted(stack, http)
    started = time.perf_counter()

    async def submit(device_id: str, secret: str) -> None:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, secret), timeout=60
        ) as panel:
            for n in range(per_device):
                job = {"function": "scan_to_email", "to": [f"r{n}@fabrikam.example"], "subject": f"Scan {n}"}
                files = {"files": ("scan.pdf", sample_pdf(f"Scan {n}"), "application/pdf")}
                response = await panel.post("/v1/jobs", data={"job": json.dumps(job)}, files=files)
                response.raise_for_status()

    await asyncio.gather(*(submit(*d) for d in devices))
    await wait_for_accepted(stack, http, before + per_device * len(devices))
    return per_device * len(devices) / (time.perf_counter() - started)


async def end_to_end(stack: Stack, http: httpx.AsyncClient, raw: float) -> list[Figure]:
    """Jobs submitted at job-gateway's HTTP API by 8 devices at once, until the SMTP server has them."""
    rate = await e2e_rate(stack, http, await devices_of_new_tenant(stack, http, 8), per_device=50)
    return [Figure("mail.e2e_jobs_per_s", rate, "jobs/s", "raw_aiosmtplib_msgs_per_s", raw)]


async def attachment_memory(stack: Stack, http: httpx.AsyncClient) -> list[Figure]:
    """How much mail-service's resident set grows while it sends one 25 MB scan, per byte of the
    scan (sampled from just before the job is queued until the SMTP server has it)."""
    principal = await tenant_with_administrator_grant(stack, http)
    data = hashlib.sha256(b"seed").digest() * (ATTACHMENT_MB * 1024 * 1024 // 32)
    client = await nats.connect(stack.nats_url)
    try:
        store = await client.jetstream().object_store(ATTACHMENTS_BUCKET)
        name = f"bench/{uuid.uuid4().hex}"
        await store.put(name, io.BytesIO(data))
    finally:
        await client.close()
    ref = AttachmentRef(
        object_name=name,
        filename="scan.pdf",
        content_type="application/pdf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    part = stack.part("mail-service-1")
    await asyncio.sleep(1)  # the earlier benchmarks' work settles
    before = await accepted(stack, http)
    with RssSampler(part) as rss:
        await queue_jobs(stack, principal.tenant_id, 1, f"bench-{uuid.uuid4().hex[:6]}", BODY, ref)
        await wait_for_accepted(stack, http, before + 1)
    print(
        f"  mail-service RSS {rss.before_kb / 1024:.1f} MB before, +{rss.growth_bytes / 2**20:.1f} MB at most"
    )
    return [
        Figure(
            "mail.rss_per_attachment",
            rss.growth_bytes / len(data),
            "ratio",
            "attachment_mb (constant)",
            ATTACHMENT_MB,
        )
    ]


async def run(stack: Stack) -> list[Figure]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
        figures, raw = await delivery(stack, http)
        figures += await end_to_end(stack, http, raw)
        figures += await attachment_memory(stack, http)
        return figures
