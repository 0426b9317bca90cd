"""The cost of telemetry: end-to-end throughput with traces and metrics on, against the same
with them off, measured in the same run on the same stack.

"On" is production's setting: every span exported over OTLP/HTTP to a collector (here a
receiver in the benchmark process that reads and discards the requests), sampling 1.0, and
each service's Prometheus endpoint scraped every second. The modes alternate (off, on, off,
on) so that a warm-up or a drift of the machine does not favour either.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from fleetmail_devkit.fleet import sample_pdf
from fleetmail_devkit.otlp import OtlpSink
from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant
from fleetmail_devkit.stack import Stack

from .figures import Figure
from .mail import accepted, wait_for_accepted
from .stack import TELEMETRY_OFF

DEVICES = 8
PER_DEVICE = 40
ROUNDS = 2
SERVICES = ("job-gateway", "token-service", "mail-service", "notifier")


async def switch(stack: Stack, on: bool, sink: OtlpSink) -> None:
    """Restart every service process with telemetry on or off."""
    for part in [p for p in stack.parts if p.name.startswith(SERVICES)]:
        service = next(s for s in SERVICES if part.name.startswith(s))
        if on:
            part.env.update(
                {
                    "FLEETMAIL_OTEL_EXPORTER": "otlp",
                    "FLEETMAIL_OTEL_ENDPOINT": sink.url,
                    "FLEETMAIL_METRICS_PORT": str(stack.metrics_port(service)),
                }
            )
        else:
            part.env.update(TELEMETRY_OFF)
        await stack.restart_part(part)


async def scrape_every_second(stack: Stack) -> None:
    """What Prometheus does to each service while the jobs run."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        while True:
            for service in SERVICES:
                try:
                    await http.get(stack.metrics_url(service))
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(1)


async def e2e_rate(stack: Stack, http: httpx.AsyncClient, devices: list[tuple[str, str]]) -> float:
    before = await accepted(stack, http)
    started = time.perf_counter()

    async def submit(device_id: str, secret: str) -> None:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, secret), timeout=60
        ) as panel:
            for n in range(PER_DEVICE):
                job = {"function": "scan_to_email", "to": [f"r{n}@fabrikam.example"], "subject": f"Scan {n}"}
                files = {"files": ("scan.pdf", sample_pdf(f"Scan {n}"), "application/pdf")}
                response = await panel.post("/v1/jobs", data={"job": json.dumps(job)}, files=files)
                response.raise_for_status()

    await asyncio.gather(*(submit(*d) for d in devices))
    await wait_for_accepted(stack, http, before + PER_DEVICE * len(devices))
    return PER_DEVICE * len(devices) / (time.perf_counter() - started)


async def run(stack: Stack) -> list[Figure]:
    sink = OtlpSink(keep=False).start()
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
            for round_ in range(ROUNDS):
                for on in (False, True):
                    await switch(stack, on, sink)
                    principal = await tenant_with_administrator_grant(stack, http)
                    devices = [await register_device(stack, principal.tenant_id) for _ in range(DEVICES)]
                    scraper = asyncio.create_task(scrape_every_second(stack)) if on else None
                    try:
                        rates[on].append(await e2e_rate(stack, http, devices))
                    finally:
                        if scraper is not None:
                            scraper.cancel()
                    print(
                        f"  round {round_ + 1}, telemetry {'on' if on else 'off'}: {rates[on][-1]:.1f} jobs/s"
                    )
            await switch(stack, False, sink)
    finally:
        sink.stop()
    assert sink.received_bytes > 0, "telemetry was on, yet nothing reached the collector"
    on, off = sum(rates[True]) / ROUNDS, sum(rates[False]) / ROUNDS
    return [
        Figure("telemetry.e2e_jobs_per_s_on", on, "jobs/s", "telemetry_off_jobs_per_s", off),
        Figure("telemetry.throughput_ratio", on / off, "ratio", "telemetry_off_jobs_per_s", off),
    ]
