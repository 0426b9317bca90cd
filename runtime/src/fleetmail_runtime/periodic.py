"""Background work that runs every so often for the life of a service, and never dies of
one failed round."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)


async def _every(seconds: float, work: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:
            log.exception("%s failed; trying again in %g s", what, seconds)


@asynccontextmanager
async def periodic(seconds: float, work: Callable[[], Awaitable[None]], what: str) -> AsyncIterator[None]:
    """Run `work` every `seconds` while the block runs; stop it when the block ends."""
    task = asyncio.create_task(_every(seconds, work, what))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
