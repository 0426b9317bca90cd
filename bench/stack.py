"""One embedded stack for all benchmarks of a `make bench` run."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fleetmail_devkit.stack import Ports, Stack

TELEMETRY_OFF = {"FLEETMAIL_OTEL_EXPORTER": "none", "FLEETMAIL_METRICS_PORT": "0"}


@asynccontextmanager
async def running_stack() -> AsyncIterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="fleetmail-bench-"))
    # Telemetry off, as the figures before telemetry were measured; the telemetry benchmark
    # turns it on for its own measurement.
    stack = Stack(data_dir, Ports.free(), echo=False, extra_env=dict(TELEMETRY_OFF))
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
