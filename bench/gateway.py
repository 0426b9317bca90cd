"""job-gateway benchmarks: intake over HTTP and SMTP against raw JetStream publishing of the
same payload, the cost of a fresh SMTP login, and memory during a 25 MB upload (HTTP) and a
25 MB message (SMTP).

mail-service is stopped while these run, so the figures are the gateway's intake alone
(jobs wait in JetStream); it is the last benchmark of the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import ssl
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib
import httpx
import nats
from fleetmail_contracts.jobs import AttachmentRef, SendScanToEmail, job_subject
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET, JOBS_STREAM
from fleetmail_devkit.stack import Stack

from .figures import Figure
from .memory import RssSampler

DEVICES = 16
PER_DEVICE = 25
SCAN = b"%PDF-1.4 " + bytes(4096)
"""The document each SMTP job carries (and the raw baseline stores too)."""


async def raw_publish_rate(stack: Stack, attachment: bytes | None = None) -> float:
    """nats-py straight into JetStream: the same job commands, 16 publishers at once; with an
    `attachment`, each job's document is first put in the Object Store, as the gateway does."""
    client = await nats.connect(stack.nats_url)
    js = client.jetstream()
    store = await js.object_store(ATTACHMENTS_BUCKET)
    tag = f"rawpub-{uuid.uuid4().hex[:6]}"

    async def publisher(p: int) -> None:
        for n in range(PER_DEVICE):
            refs: tuple[AttachmentRef, ...] = ()
            if attachment is not None:
                name = f"{tag}-{p}-{n}/0"
                await store.put(name, io.BytesIO(attachment))
                refs = (
                    AttachmentRef(
                        object_name=name,
                        filename="scan.pdf",
                        content_type="application/pdf",
                        size=len(attachment),
                        sha256=hashlib.sha256(attachment).hexdigest(),
                    ),
                )
            job = SendScanToEmail(
                job_id=f"{tag}-{p}-{n}",
                tenant_id="bench-gateway",
                device_id=f"dev-{p}",
                submitted_at=datetime.now(UTC),
                to=("recipient@fabrikam.example",),
                subject="Scan",
                attachments=refs,
            )
            await js.publish(
                job_subject(job.function),
                job.model_dump_json().encode(),
                headers={"Nats-Msg-Id": job.job_id},
                stream=JOBS_STREAM,
            )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(publisher(p) for p in range(DEVICES)))
        return DEVICES * PER_DEVICE / (time.perf_counter() - started)
    finally:
        await client.close()


async def devices(stack: Stack, admin: httpx.AsyncClient) -> tuple[str, list[tuple[str, str]]]:
    tenant_id = f"bench-{uuid.uuid4().hex[:6]}"
    await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": f"admin@{tenant_id}.example",
        },
    )
    found = []
    for n in range(DEVICES):
        body = (
            await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"{tenant_id}-{n}"})
        ).json()
        found.append((body["device_id"], body["secret"]))
    return tenant_id, found


async def http_rate(stack: Stack, fleet: list[tuple[str, str]]) -> float:
    async def device(device_id: str, secret: str) -> None:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, secret), timeout=60
        ) as http:
            for n in range(PER_DEVICE):
                job = {"to": ["recipient@fabrikam.example"], "subject": f"Scan {n}"}
                response = await http.post("/v1/jobs", data={"job": json.dumps(job)})
                response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(device(*d) for d in fleet))
    return DEVICES * PER_DEVICE / (time.perf_counter() - started)


def scan_message(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "mfp@contoso.example",
        "boss@fabrikam.example",
        f"Scan {n}",
    )
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mfp>"
    message.set_content("Scanned document attached.")
    message.add_attachment(SCAN, maintype="application", subtype="pdf", filename="scan.pdf")
    return message


def smtp_client(stack: Stack, context: ssl.SSLContext) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context, timeout=60
    )


async def smtp_rate(stack: Stack, fleet: list[tuple[str, str]], fresh: bool) -> float:
    """16 devices at once; each reuses one session, or (what most devices do) opens a fresh
    one per message: EHLO, STARTTLS, AUTH, one message, QUIT."""
    context = ssl.create_default_context(cafile=str(stack.ca_file))

    async def device(device_id: str, secret: str) -> None:
        if fresh:
            for n in range(PER_DEVICE):
                async with smtp_client(stack, context) as smtp:
                    await smtp.login(device_id, secret)
                    await smtp.send_message(scan_message(n))
            return
        async with smtp_client(stack, context) as smtp:
            await smtp.login(device_id, secret)
            for n in range(PER_DEVICE):
                await smtp.send_message(scan_message(n))

    started = time.perf_counter()
    await asyncio.gather(*(device(*d) for d in fleet))
    return DEVICES * PER_DEVICE / (time.perf_counter() - started)


async def upload_memory(stack: Stack, device: tuple[str, str]) -> float:
    """How much job-gateway's resident set grows while one 25 MB attachment is uploaded, in MB
    (sampled from just before the request until its answer)."""
    data = hashlib.sha256(b"upload").digest() * (25 * 1024 * 1024 // 32)
    part = stack.part("job-gateway")
    await asyncio.sleep(0.5)  # the earlier benchmarks' work settles
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=120) as http:
        job = {"to": ["recipient@fabrikam.example"], "subject": "Big scan"}
        with RssSampler(part) as rss:
            response = await http.post(
                "/v1/jobs",
                data={"job": json.dumps(job)},
                files={"files": ("scan.pdf", data, "application/pdf")},
            )
        response.raise_for_status()
    print(
        f"  job-gateway RSS {rss.before_kb / 1024:.1f} MB before, +{rss.growth_bytes / 2**20:.1f} MB at most"
    )
    return rss.growth_bytes / 2**20


def big_message(size: int) -> EmailMessage:
    """A scanner's message with one document of `size` bytes (base64 on the wire: a third more)."""
    message = scan_message(0)
    message.replace_header("Subject", f"Scan of {size} bytes")
    document = hashlib.sha256(b"smtp").digest() * (size // 32)
    message.clear_content()
    message.set_content("Scanned document attached.")
    message.add_attachment(document, maintype="application", subtype="pdf", filename="scan.pdf")
    return message


async def smtp_message_memory(stack: Stack, device: tuple[str, str], size: int) -> float:
    """How much job-gateway's resident set grows while a device sends one message with a
    document of `size` bytes over SMTP, in MB (sampled from MAIL FROM until the reply to DATA:
    receiving, reading and storing it)."""
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    message = big_message(size)
    part = stack.part("job-gateway")
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context, timeout=300
    ) as smtp:
        await smtp.login(*device)
        await asyncio.sleep(0.5)  # the earlier work settles before the sample starts
        with RssSampler(part) as rss:
            _, reply = await smtp.send_message(message)
    assert "queued as" in reply, reply
    print(
        f"  job-gateway RSS {rss.before_kb / 1024:.1f} MB before a {size / 2**20:.3f} MB message,"
        f" +{rss.growth_bytes / 2**20:.1f} MB at most"
    )
    return rss.growth_bytes / 2**20


async def run_smtp_memory(stack: Stack) -> list[Figure]:
    """Memory while a device sends a 25 MB message, against a 1 KB message in the same run."""
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=60) as admin:
        _, fleet = await devices(stack, admin)
    small = await smtp_message_memory(stack, fleet[0], 1024)
    large = await smtp_message_memory(stack, fleet[1], 25 * 1024 * 1024)
    return [
        Figure("gateway.smtp_rss_growth_mb_25mb_message", large, "MB", "rss_growth_mb_1kb_message", small)
    ]


async def run(stack: Stack) -> list[Figure]:
    await stack.stop_part(stack.part("mail-service-1"))
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=60) as admin:
        _, fleet = await devices(stack, admin)
    raw = await raw_publish_rate(stack)
    raw_with_scan = await raw_publish_rate(stack, SCAN)
    http = await http_rate(stack, fleet)
    smtp_reuse = await smtp_rate(stack, fleet, fresh=False)
    smtp_fresh = await smtp_rate(stack, fleet, fresh=True)
    growth = await upload_memory(stack, fleet[0])
    return [
        Figure("gateway.http_jobs_per_s", http, "jobs/s", "raw_jetstream_publish_per_s", raw),
        Figure("gateway.http_vs_raw_publish", http / raw, "ratio", "raw_jetstream_publish_per_s", raw),
        # SMTP jobs carry a 4 KB document: their baseline stores the same document first.
        Figure(
            "gateway.smtp_jobs_per_s",
            smtp_reuse,
            "jobs/s",
            "raw_jetstream_publish_with_4kb_document_per_s",
            raw_with_scan,
        ),
        Figure(
            "gateway.smtp_vs_raw_publish",
            smtp_reuse / raw_with_scan,
            "ratio",
            "raw_jetstream_publish_with_4kb_document_per_s",
            raw_with_scan,
        ),
        Figure(
            "gateway.smtp_fresh_vs_reuse",
            smtp_fresh / smtp_reuse,
            "ratio",
            "smtp_reuse_jobs_per_s",
            smtp_reuse,
        ),
        Figure("gateway.rss_growth_mb_25mb_upload", growth, "MB", "upload_mb (constant)", 25.0),
    ]
