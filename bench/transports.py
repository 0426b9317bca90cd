"""One mailbox through Microsoft Graph against the same mailbox's way over SMTP, both against
the emulators with the providers' real limits (Exchange SMTP: 3 at once, 30 a minute; Graph:
4 requests at once, 10,000 per 10 minutes), in the same run: how much further one mailbox
goes when its tenant's transport is graph."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from fleetmail_devkit.probes import queue_jobs, tenant_with_administrator_grant
from fleetmail_devkit.stack import Stack

from .figures import Figure

SMTP_JOBS = 30
"""A minute of Exchange's SMTP rate: longer only repeats it."""
GRAPH_JOBS = 300
EXCHANGE_LIMITS = {"concurrent": 3, "per_minute": 30}
"""The real Exchange Online limits of the mailbox, over the bench stack's lifted default; its
Graph limits stay the emulator's real ones."""


async def delivered(stack: Stack, http: httpx.AsyncClient, sender: str) -> int:
    answer = await http.get(f"{stack.smtp_control_url}/_emulator/messages", params={"sender": sender})
    return len(answer.json())


async def one_mailbox_rate(stack: Stack, http: httpx.AsyncClient, transport: str, jobs: int) -> float:
    """Jobs a second of one mailbox (a new tenant's administrator), queued at once, until the
    emulator has them all; the tenant's limits are the provider's real ones."""
    limits = {"messages_per_minute": 30, "concurrent_submissions": 3} if transport == "smtp" else {}
    principal = await tenant_with_administrator_grant(stack, http, transport=transport, sending_limits=limits)
    mailbox = await http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes",
        json={"address": principal.address, "limits": EXCHANGE_LIMITS},
    )
    mailbox.raise_for_status()
    started = time.perf_counter()
    await queue_jobs(stack, principal.tenant_id, jobs, f"bench-{transport}-{uuid.uuid4().hex[:6]}")
    deadline = started + 600
    while (done := await delivered(stack, http, principal.address)) < jobs:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {done} of {jobs} jobs through {transport} arrived")
        await asyncio.sleep(0.1)
    return jobs / (time.perf_counter() - started)


async def run(stack: Stack) -> list[Figure]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
        smtp = await one_mailbox_rate(stack, http, "smtp", SMTP_JOBS)
        graph = await one_mailbox_rate(stack, http, "graph", GRAPH_JOBS)
    return [
        Figure(
            "mail.graph_vs_smtp_jobs_per_s_one_mailbox",
            graph / smtp,
            "ratio",
            "smtp_jobs_per_s_one_mailbox",
            smtp,
        ),
        Figure("mail.graph_jobs_per_s_one_mailbox", graph, "jobs/s", "smtp_jobs_per_s_one_mailbox", smtp),
    ]
