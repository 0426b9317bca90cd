"""One embedded stack for all benchmarks of a `make bench` run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fleetmail_devkit.probes import UNPACED_ENV, lift_rate_limit
from fleetmail_devkit.stack import Stack, temporary_stack

TELEMETRY_OFF = {"FLEETMAIL_OTEL_EXPORTER": "none", "FLEETMAIL_METRICS_PORT": "0"}


@asynccontextmanager
async def running_stack() -> AsyncIterator[Stack]:
    # Telemetry off, as the figures before telemetry were measured; the telemetry benchmark
    # turns it on for its own measurement.
    # Paced at Exchange's 30 a minute, every figure would be the rate limit's.
    async with temporary_stack("fleetmail-bench-", extra_env={**TELEMETRY_OFF, **UNPACED_ENV}) as stack:
        await lift_rate_limit(stack)
        yield stack
