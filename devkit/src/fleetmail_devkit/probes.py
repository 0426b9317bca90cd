"""What tests and benchmarks do to the stack: a tenant with an administrator grant, token requests."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
from fleetmail_contracts.jobs import AttachmentRef, SendScanToEmail, job_subject
from fleetmail_contracts.streams import JOBS_STREAM
from fleetmail_contracts.tokens import (
    ACCESS_TOKEN_SUBJECT,
    AccessTokenReply,
    AccessTokenRequest,
    Principal,
    PrincipalKind,
)

from fleetmail_devkit.ports import free_port, port_open
from fleetmail_devkit.stack import Stack


@dataclass(frozen=True)
class SmtpEmulator:
    port: int
    """STARTTLS port."""
    tls_port: int
    control_url: str
    ca_file: Path
    api_url: str
    """The provider's mail API over HTTPS: Microsoft Graph, or the Gmail API."""


@asynccontextmanager
async def smtp_emulator(
    stack: Stack,
    flavour: str,
    tls_dir: Path | None = None,
    smtp_auth_enabled: bool = True,
    api_port: int | None = None,
) -> AsyncIterator[SmtpEmulator]:
    """One more SMTP emulator process: Gmail's flavour, or a server under another CA
    (`tls_dir` holds its own CA, which nothing trusts by default); `smtp_auth_enabled` False
    keeps Exchange's default for the organisation (SMTP AUTH off); `api_port` where its mail
    API listens (`stack.ports.gmail_api`: the Gmail API the stack's mail-service uses)."""
    port, tls_port, control, api = free_port(), free_port(), free_port(), api_port or free_port()
    tls_dir = tls_dir or stack.data_dir / "tls"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetmail_devkit.emulators.serve",
        "smtp",
        "--flavour",
        flavour,
        "--starttls-port",
        str(port),
        "--tls-port",
        str(tls_port),
        "--control-port",
        str(control),
        "--api-port",
        str(api),
        "--tls-dir",
        str(tls_dir),
        "--maildir",
        str(stack.data_dir / f"maildir-{port}"),
        "--microsoft-url",
        stack.microsoft_url,
        "--google-url",
        stack.google_url,
        *(["--smtp-auth-enabled"] if smtp_auth_enabled else []),
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        # A loaded machine can take tens of seconds to start a Python process: wait for it,
        # and say so if it never listens rather than hand out a dead emulator.
        deadline = time.monotonic() + 60
        while not (port_open(port) and port_open(control) and port_open(api)):
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the {flavour} SMTP emulator did not start (exit code {process.returncode})"
                )
            await asyncio.sleep(0.1)
        yield SmtpEmulator(
            port, tls_port, f"http://127.0.0.1:{control}", tls_dir / "ca.pem", f"https://127.0.0.1:{api}"
        )
    finally:
        process.terminate()
        await process.wait()


async def tenant_with_administrator_grant(
    stack: Stack, emulator: httpx.AsyncClient, **settings: object
) -> Principal:
    """A new tenant sending through the stack's SMTP emulator (with `settings` besides, e.g.
    `from_policy`), its administrator signed in."""
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    admin = f"admin@{tenant_id}.example"
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        created = await http.put(
            f"/v1/admin/tenants/{tenant_id}",
            json={
                "tenant_id": tenant_id,
                "oauth_enabled": True,
                "administrator_address": admin,
                "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
                **settings,
            },
        )
        assert created.status_code == 200, created.text
        started = (await http.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
        approved = await emulator.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": admin},
        )
        assert approved.status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = (
                await http.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}")
            ).json()
            if status["state"] == "succeeded":
                return Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=admin)
            assert status["state"] == "pending", status
            await asyncio.sleep(0.2)
    raise AssertionError("acquisition did not finish")


async def request_tokens(
    stack: Stack, principal: Principal, count: int, force_refresh: bool = False, reply_timeout_s: float = 20
) -> list[AccessTokenReply]:
    """`count` concurrent token requests, as many mail-service workers would send them."""
    replies = await try_request_tokens(stack, principal, count, force_refresh, reply_timeout_s)
    assert all(isinstance(r, AccessTokenReply) for r in replies), replies
    return replies  # type: ignore[return-value]


async def try_request_tokens(
    stack: Stack, principal: Principal, count: int, force_refresh: bool = False, reply_timeout_s: float = 20
) -> list[AccessTokenReply | BaseException]:
    """The same, with a request that got no answer (its replica died) as its exception."""
    client = await nats.connect(stack.nats_url)
    try:
        payload = (
            AccessTokenRequest(principal=principal, force_refresh=force_refresh).model_dump_json().encode()
        )
        replies = await asyncio.gather(
            *(client.request(ACCESS_TOKEN_SUBJECT, payload, timeout=reply_timeout_s) for _ in range(count)),
            return_exceptions=True,
        )
        return [
            r if isinstance(r, BaseException) else AccessTokenReply.model_validate_json(r.data)
            for r in replies
        ]
    finally:
        await client.close()


async def token_endpoint_calls(
    stack: Stack, emulator: httpx.AsyncClient, grant_type: str = "refresh_token"
) -> int:
    """Calls to the Microsoft emulator's token endpoint redeeming `grant_type` (faulted ones included)."""
    calls = (await emulator.get(f"{stack.microsoft_url}/_emulator/calls")).json()
    return int(calls.get(f"token:{grant_type}", 0))


UNPACED_ENV = {"FLEETMAIL_MAIL_MICROSOFT_MESSAGES_PER_MINUTE": "600000"}
"""mail-service's environment for a stack that measures fleetmail's own throughput, not
Exchange's 30 messages a minute per mailbox (call `lift_rate_limit` on its emulator too)."""


async def lift_rate_limit(stack: Stack) -> None:
    """The SMTP emulator's mailboxes take any number of messages a minute (concurrency and
    quotas stay the provider's)."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as control:
        answer = await control.post(
            f"{stack.smtp_control_url}/_emulator/settings", json={"default_limits": {"per_minute": 600000}}
        )
        answer.raise_for_status()


async def set_access_token_lifetime(stack: Stack, emulator: httpx.AsyncClient, seconds: int) -> None:
    await emulator.post(
        f"{stack.microsoft_url}/_emulator/settings", json={"access_token_lifetime_s": seconds}
    )


async def events_position(stack: Stack) -> int:
    """The events stream's last sequence number now: pass it as `events(..., after=…)` to read
    only what comes later."""
    client = await nats.connect(stack.nats_url)
    try:
        return int((await client.jetstream().stream_info("FLEETMAIL_EVENTS")).state.last_seq)
    finally:
        await client.close()


async def events(stack: Stack, subject: str, after: int = 0) -> list[dict[str, object]]:
    """Every event on the events stream matching `subject` so far (after sequence `after`),
    oldest first. A pull consumer says how many there are before any is fetched, so reading
    them waits for nothing more."""
    import json

    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    client = await nats.connect(stack.nats_url)
    try:
        js = client.jetstream()
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
            opt_start_seq=after + 1 if after else None,
            inactive_threshold=10.0,
            mem_storage=True,
        )
        subscription = await js.pull_subscribe(subject, stream="FLEETMAIL_EVENTS", config=config)
        remaining = (await subscription.consumer_info()).num_pending or 0
        found: list[dict[str, object]] = []
        while remaining > 0:
            batch = await subscription.fetch(min(remaining, 1000), timeout=10)
            found.extend(json.loads(message.data) for message in batch)
            remaining -= len(batch)
        await subscription.unsubscribe()
        return found
    finally:
        await client.close()


async def delivered(stack: Stack, http: httpx.AsyncClient, tag: str) -> Counter[str]:
    """How many times the SMTP emulator received each Message-ID, among the messages whose
    subject starts with `tag` (as `queue_jobs` makes them)."""
    messages = (
        await http.get(f"{stack.smtp_control_url}/_emulator/messages", params={"subject_prefix": tag})
    ).json()
    return Counter(m["message_id"] for m in messages)


async def wait_for_delivered(
    stack: Stack,
    http: httpx.AsyncClient,
    tag: str,
    enough: Callable[[Counter[str]], bool],
    seconds: float,
    every_s: float = 0.1,
) -> Counter[str]:
    """`delivered(...)` once `enough` says so, or as it stands after `seconds`."""
    deadline = time.monotonic() + seconds
    seen = await delivered(stack, http, tag)
    while not enough(seen) and time.monotonic() < deadline:
        await asyncio.sleep(every_s)
        seen = await delivered(stack, http, tag)
    return seen


async def queue_jobs(
    stack: Stack,
    tenant_id: str,
    count: int,
    tag: str,
    body: str | None = None,
    attachment: AttachmentRef | None = None,
) -> set[str]:
    """Scan-to-email jobs published straight into JetStream, as job-gateway would; returns
    the Message-IDs they will carry (`<tag>-<n>` job ids, subjects starting with the tag)."""
    from datetime import UTC, datetime

    client = await nats.connect(stack.nats_url)
    message_ids = set()
    try:
        js = client.jetstream()
        for start in range(0, count, 200):
            acks = []
            for n in range(start, min(count, start + 200)):
                job = SendScanToEmail(
                    job_id=f"{tag}-{n:04d}",
                    tenant_id=tenant_id,
                    device_id="probe-device",
                    submitted_at=datetime.now(UTC),
                    to=("recipient@fabrikam.example",),
                    subject=f"{tag} {n}",
                    body=body,
                    attachments=(attachment,) if attachment else (),
                )
                message_ids.add(f"<{job.job_id}@fleetmail>")
                acks.append(
                    js.publish(
                        job_subject(job.function),
                        job.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": job.job_id},
                        stream=JOBS_STREAM,
                    )
                )
            await asyncio.gather(*acks)
    finally:
        await client.close()
    return message_ids


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


async def scrape(stack: Stack, service: str) -> list[Sample]:
    """Every sample on the service's Prometheus scrape endpoint, as Prometheus would read it."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        response = await http.get(stack.metrics_url(service))
    response.raise_for_status()
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the named samples whose labels include `labels`."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def register_device(stack: Stack, tenant_id: str) -> tuple[str, str]:
    """A new device of the tenant, registered by the administrator: (device id, secret)."""
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers=headers, timeout=30, trust_env=False
    ) as admin:
        response = await admin.post(
            f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"mfp-{uuid.uuid4().hex[:6]}"}
        )
    response.raise_for_status()
    body = response.json()
    return body["device_id"], body["secret"]


@asynccontextmanager
async def device_panel(stack: Stack, tenant_id: str) -> AsyncIterator[httpx.AsyncClient]:
    """job-gateway's device API as a newly registered device of the tenant."""
    device_id, secret = await register_device(stack, tenant_id)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(device_id, secret), timeout=60, trust_env=False
    ) as panel:
        yield panel
