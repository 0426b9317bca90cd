"""Fleet overview benchmark: server time of the overview with 1,000 tenants, 20,000 devices and
100,000 jobs in the stores, p95 over repeated requests of the first page in the default sort.

The fleet is written straight into each service's database in bulk (tenants, devices and
their counts, jobs in the gateway's; administrator and user grants in token-service's;
alerts in the notifier's), so the batch questions have real work. It runs last: the fleet
stays in the run's throwaway stack (deleting it again would take longer than writing it).
A healthy fleet's shape: 98% of the jobs of the last 72 hours sent, 1.5% failed (one in
five of those sent again since), 0.5% not finished; 5% of the administrator tokens dead,
5% never acquired, 3% expiring; 5% of the user grants to sign in again; 400 unresolved
alerts besides 1,000 resolved ones.

Each figure is measured by URL: `/v1/admin/overview`, and `/console/` signed in (the console's
landing page renders the same use case): repeated requests, as administrators looking at the
fleet make them, and apart, pages that each come after the kept figures aged
(`FLEETMAIL_GATEWAY_OVERVIEW_MAX_AGE_S`), so that page waits for the figures to be asked
again: `console.overview_asked_ms_1000_tenants`, what one of them costs. The baseline is one
tenant's token row (`GET /v1/admin/tenants/{id}/tokens`, one token-service round trip and
one tenant read): the work `fleetmail status` used to repeat, with three more calls, for
every tenant. Times are taken by the client over loopback, so they include the HTTP hop.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_devkit.stack import Stack
from job_gateway.settings import GatewaySettings
from pymongo import AsyncMongoClient

from .figures import Figure

TENANTS = 1_000
DEVICES = 20_000
JOBS = 100_000
USERS_PER_TENANT = 3
ALERTS_OPEN = 400
ALERTS_RESOLVED = 1_000
REQUESTS = 40
WARM_UP = 3
BATCH = 5_000
NAME = "console.overview_ms_1000_tenants"
COLD = 8
MAX_AGE_S = GatewaySettings.model_fields["overview_max_age_s"].default
"""The embedded stack keeps job-gateway's default."""


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


def batches(documents: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(documents), BATCH):
        yield documents[start : start + BATCH]


def fleet(tag: str, now: datetime) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every document to write, by (database, collection)."""
    rng = random.Random(21)
    tenant_ids = [f"{tag}-{n:04d}" for n in range(TENANTS)]
    tenants = [
        {
            "_id": t,
            **TenantSettings(
                tenant_id=t,
                display_name=f"Customer {n:04d}",
                oauth_enabled=n % 10 != 9,
                administrator_address=f"admin@{t}.example",
                mail_domains=(f"{t}.example",),
            ).model_dump(mode="json"),
        }
        for n, t in enumerate(tenant_ids)
    ]
    per_tenant = DEVICES // TENANTS
    devices: list[dict[str, Any]] = [
        {
            "_id": f"{t}/mfp-{d}",
            "tenant_id": t,
            "device_id": f"mfp-{d}",
            "name": f"MFP {d}",
            "secret_hash": uuid.uuid4().hex * 2,
            "disabled": False,
            "created_at": now,
            "allow_cidrs": [],
            "smtp_function": None,
            "smtp_rules": [],
        }
        for t in tenant_ids
        for d in range(per_tenant)
    ]
    jobs = []
    for n in range(JOBS):
        submitted = now - timedelta(hours=rng.random() * 72)
        roll = rng.random()
        status = (
            "sent"
            if roll < 0.98
            else "failed"
            if roll < 0.995
            else rng.choice(["queued", "deferred", "parked"])
        )
        job: dict[str, Any] = {
            "_id": f"{tag}-job-{n}",
            "tenant_id": tenant_ids[n % TENANTS],
            "device_id": f"mfp-{n % per_tenant}",
            "function": "scan_to_email",
            "status": status,
            "submitted_at": submitted,
            "updated_at": submitted + timedelta(minutes=1),
        }
        if status == "failed":
            job["dead_lettered_at"] = submitted + timedelta(minutes=1)
            if rng.random() < 0.2:  # sent again since
                job["status"] = "sent"
        jobs.append(job)
    grants = []
    for n, t in enumerate(tenant_ids):
        if n % 20 != 19:  # 5% never acquired
            dead = n % 20 == 7
            death = now + timedelta(days=5 if n % 33 == 0 else 60 + n % 30)
            grants.append(grant(t, "administrator", f"admin@{t}.example", dead, death, now))
        for u in range(USERS_PER_TENANT):
            grants.append(
                grant(t, "user", f"user{u}@{t}.example", rng.random() < 0.05, now + timedelta(days=80), now)
            )
    alerts = [
        alert(
            tenant_ids[rng.randrange(TENANTS)],
            i < ALERTS_OPEN,
            rng.choice(["critical", "warning", "info"]),
            now,
        )
        for i in range(ALERTS_OPEN + ALERTS_RESOLVED)
    ]
    return {
        ("fleetmail_gateway", "tenants"): tenants,
        ("fleetmail_gateway", "devices"): devices,
        ("fleetmail_gateway", "jobs"): jobs,
        ("fleetmail_tokens", "grants"): grants,
        ("fleetmail_notifier", "alerts"): alerts,
    }


def grant(
    tenant_id: str, kind: str, address: str, dead: bool, death: datetime, now: datetime
) -> dict[str, Any]:
    """A grant as token-service keeps it, without tokens: the overview never reads them."""
    return {
        "_id": f"{tenant_id}:administrator" if kind == "administrator" else f"{tenant_id}:user:{address}",
        "tenant_id": tenant_id,
        "kind": kind,
        "address": address,
        "provider": "microsoft",
        "status": "reauthorization_required" if dead else "active",
        "scopes": [],
        "refresh_token": None,
        "access_token": None,
        "version": 1,
        "flow": "device_code",
        "acquired_at": now - timedelta(days=30),
        "last_refreshed_at": now - timedelta(days=1),
        "last_used_at": None,
        "predicted_death_at": death,
        "status_detail": "revoked" if dead else None,
        "lease": None,
    }


def alert(tenant_id: str, live: bool, severity: str, now: datetime) -> dict[str, Any]:
    key = uuid.uuid4().hex
    return {
        "_id": key,
        "alert_id": key,
        "tenant_id": tenant_id,
        "cause": "delivery_failure_rate",
        "severity": severity,
        "state": "open" if live else "resolved",
        "title": "Deliveries are failing",
        "detail": "bench",
        "for_administrators": True,
        "raised_at": now,
        "last_seen_at": now,
        "changed_at": now,
    }


async def seed(
    mongo: AsyncMongoClient[dict[str, Any]], documents: dict[tuple[str, str], list[dict[str, Any]]]
) -> None:
    for (database, collection), found in documents.items():
        for batch in batches(found):
            await mongo[database][collection].insert_many(batch, ordered=False)
    # The devices' counts, as registering each device would have left them.
    per_tenant: dict[str, int] = {}
    for device in documents["fleetmail_gateway", "devices"]:
        per_tenant[device["tenant_id"]] = per_tenant.get(device["tenant_id"], 0) + 1
    await mongo["fleetmail_gateway"]["counters"].update_one(
        {"_id": "devices"}, {"$inc": {f"by_tenant.{t}": n for t, n in per_tenant.items()}}, upsert=True
    )


async def timed(
    http: httpx.AsyncClient,
    url: str,
    params: dict[str, str] | None = None,
    warm_up: int = WARM_UP,
    requests: int = REQUESTS,
) -> list[float]:
    """Milliseconds of each request after the warm-up; every answer must be a 200."""
    samples = []
    for n in range(warm_up + requests):
        started = time.perf_counter()
        response = await http.get(url, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if n >= warm_up:
            samples.append(elapsed)
    return samples


async def run(stack: Stack) -> list[Figure]:
    now = datetime.now(UTC)
    tag = f"bo{uuid.uuid4().hex[:4]}"
    documents = fleet(tag, now)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    try:
        started = time.perf_counter()
        await seed(mongo, documents)
        print(f"  seeded the fleet in {time.perf_counter() - started:.0f} s", flush=True)
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=60) as http:
            first = (await http.get("/v1/admin/overview")).raise_for_status().json()
            if first["totals"]["tenants"] < TENANTS:
                raise RuntimeError(f"the overview shows {first['totals']['tenants']} tenants, not {TENANTS}+")
            baseline = p95(await timed(http, f"/v1/admin/tenants/{tag}-0000/tokens"))
            samples = await timed(http, "/v1/admin/overview")
            api = p95(samples)
            print(
                f"  /v1/admin/overview: median {statistics.median(samples):.0f} ms, "
                f"fastest {min(samples):.0f} ms, slowest {max(samples):.0f} ms",
                flush=True,
            )
            figures = [
                Figure("api.overview_ms_1000_tenants", api, "ms", "one_tenant_tokens_p95_ms", baseline)
            ]
            # The console's landing page, signed in as a browser is (session cookie), renders
            # the same use case: the figure.
            signed_in = await http.post(
                "/console/sign-in",
                data={"api_key": stack.admin_api_key()},
                headers={"Origin": stack.gateway_url},
            )
            if signed_in.status_code != 303:
                raise RuntimeError(f"the console refused the sign-in: {signed_in.status_code}")
            pages = await timed(http, "/console/")
            figures.append(Figure(NAME, p95(pages), "ms", "one_tenant_tokens_p95_ms", baseline))
            # What the figures cost when asked again (every FLEETMAIL_GATEWAY_OVERVIEW_MAX_AGE_S,
            # once for everyone looking): each page after the kept figures have aged.
            cold = []
            for _ in range(COLD):
                await asyncio.sleep(MAX_AGE_S + 0.2)
                cold += await timed(http, "/console/", warm_up=0, requests=1)
            figures.append(
                Figure(
                    "console.overview_asked_ms_1000_tenants",
                    p95(cold),
                    "ms",
                    "one_tenant_tokens_p95_ms",
                    baseline,
                )
            )
            print(
                f"  /console/: median {statistics.median(pages):.0f} ms, slowest {max(pages):.0f} ms; "
                f"with the figures asked again: median {statistics.median(cold):.0f} ms",
                flush=True,
            )
    finally:
        await mongo.close()
    for figure in figures:
        print(
            f"  {figure.name}: {figure.value:.1f} {figure.unit} ({figure.baseline} = {figure.baseline_value:.1f})"
        )
    return figures
