"""The cost of telemetry: end-to-end throughput with traces and metrics on, against the same
with them off, measured in the same run on the same stack.

"On" is production's setting: every span exported over OTLP/HTTP to a collector (here a
receiver in the benchmark process that reads and discards the requests), sampling 1.0, and
each service's Prometheus endpoint scraped as the deployment's Prometheus does it (the
`scrape_interval` of deploy/compose/prometheus.yml, first at the start of every round).

The modes alternate in the order of ORDER, so that a drift of the machine or of the stack's
state over the run (the job history grows with every round) weighs on both modes alike; in
off, on, off, on every "on" round came after its "off" one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import yaml
from fleetmail_devkit.otlp import OtlpSink
from fleetmail_devkit.stack import Stack

from .figures import Figure
from .mail import devices_of_new_tenant, e2e_rate
from .stack import TELEMETRY_OFF

DEVICES = 8
PER_DEVICE = 100
# Telemetry off / on: ABBA BAAB, which cancels a steady drift of the machine and a curved
# one. A round of 480 jobs varied by about ±5 % here: rounds of 800, four of each, keep that
# out of the ratio better (runs of two rounds of 480 each ranged 0.86 to 0.93).
ORDER = (False, True, True, False, True, False, False, True)
# Each round restarts the services, and the first jobs after a restart pay for what is done
# once (the new tenant's first token, imports and caches filled on first use, the exporter's
# and the scrape endpoint's first run): a few jobs per device, untimed, before each round
# measure the services as they run for days, in both modes alike.
WARM_UP_PER_DEVICE = 10
SERVICES = ("job-gateway", "token-service", "mail-service", "notifier")
DEPLOYED_PROMETHEUS = Path(__file__).parents[1] / "deploy" / "compose" / "prometheus.yml"


def deployed_scrape_interval_s() -> float:
    """The scrape interval the deployment gives Prometheus ("15s", "1m", …)."""
    interval = str(yaml.safe_load(DEPLOYED_PROMETHEUS.read_text())["global"]["scrape_interval"])
    match = re.fullmatch(r"(\d+)(ms|s|m)", interval)
    if match is None:
        raise ValueError(f"{DEPLOYED_PROMETHEUS}: scrape_interval {interval!r} is not understood")
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


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


async def scrape_as_deployed(stack: Stack, interval_s: float) -> None:
    """What the deployment's Prometheus does to each service while the jobs run."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        while True:
            for service in SERVICES:
                try:
                    await http.get(stack.metrics_url(service))
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(interval_s)


@asynccontextmanager
async def round_ready(
    stack: Stack, http: httpx.AsyncClient, on: bool, interval_s: float
) -> AsyncIterator[list[tuple[str, str]]]:
    """A round's setting, the services already switched: a new tenant's devices, warmed up
    (untimed), and Prometheus scraping as deployed while telemetry is on. The block times the
    round's jobs."""
    devices = await devices_of_new_tenant(stack, http, DEVICES)
    scraper = asyncio.create_task(scrape_as_deployed(stack, interval_s)) if on else None
    try:
        await e2e_rate(stack, http, devices, WARM_UP_PER_DEVICE)
        yield devices
    finally:
        if scraper is not None:
            scraper.cancel()


async def run(stack: Stack) -> list[Figure]:
    sink = OtlpSink(keep=False).start()
    rates: dict[bool, list[float]] = {False: [], True: []}
    interval_s = deployed_scrape_interval_s()
    try:
        async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
            for round_, on in enumerate(ORDER, start=1):
                await switch(stack, on, sink)
                async with round_ready(stack, http, on, interval_s) as devices:
                    rates[on].append(await e2e_rate(stack, http, devices, PER_DEVICE))
                print(f"  round {round_}, telemetry {'on' if on else 'off'}: {rates[on][-1]:.1f} jobs/s")
            await switch(stack, False, sink)
    finally:
        sink.stop()
    assert sink.received_bytes > 0, "telemetry was on, yet nothing reached the collector"
    rate_on = sum(rates[True]) / len(rates[True])
    rate_off = sum(rates[False]) / len(rates[False])
    return [
        Figure("telemetry.e2e_jobs_per_s_on", rate_on, "jobs/s", "telemetry_off_jobs_per_s", rate_off),
        Figure(
            "telemetry.throughput_ratio", rate_on / rate_off, "ratio", "telemetry_off_jobs_per_s", rate_off
        ),
    ]
