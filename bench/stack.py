"""One embedded stack for all benchmarks of a `make bench` run."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fleetmail_devkit.stack import Ports, Stack


@asynccontextmanager
async def running_stack() -> AsyncIterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="fleetmail-bench-"))
    stack = Stack(data_dir, Ports.free(), echo=False)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
