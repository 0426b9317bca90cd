"""One way to wait in this suite: `eventually()`.

Tests never sleep for a fixed time to let something happen. They wait for a sign that it
happened, with a deadline; and a test that checks that something did *not* happen first
waits for a positive sign that it would have shown by now (a later event, a status).

The pause between checks grows from `every` to at most `SLOWEST_CHECK_S` (or `every`, when
that is longer): most waits end within a few quick checks, and a long wait (a thousand jobs
to fail) does not spend the machine re-reading a stream or a mailbox ten times a second —
the suite's stacks run side by side on a few cores, so the CPU a check burns slows the
very servers it waits for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

SLOWEST_CHECK_S = 0.5
GROWTH = 1.5


def pauses(every: float) -> Iterator[float]:
    """The pauses between checks: `every`, then half as long again each time, up to
    `max(every, SLOWEST_CHECK_S)`."""
    longest = max(every, SLOWEST_CHECK_S)
    pause = every
    while True:
        yield pause
        pause = min(pause * GROWTH, longest)


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    within: float = 30.0,
    every: float = 0.1,
    what: str | None = None,
) -> T:
    """Call `check` until it returns something truthy without raising `AssertionError`, and
    return that. After `within` seconds, fail with the last assertion (or what was seen).
    `every` is the first pause between checks; later ones grow (see `pauses`).

        job = await eventually(lambda: job_status(job_id), what="the job to be sent")
        await eventually(assert_delivered, within=60)   # an `async def` that asserts
    """
    deadline = time.monotonic() + within
    last_error: AssertionError | None = None
    last_value: object = None
    waits = pauses(every)
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            last_value, last_error = result, None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            waited = f"waited {within:g} s" + (f" for {what}" if what else "")
            if last_error is not None:
                raise AssertionError(f"{waited}: {last_error}") from last_error
            raise AssertionError(f"{waited}; the last check gave {last_value!r}")
        await asyncio.sleep(min(next(waits), max(deadline - time.monotonic(), 0)))
