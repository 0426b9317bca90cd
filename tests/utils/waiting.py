"""One way to wait in this suite: `eventually()`.

Tests never sleep for a fixed time to let something happen. They wait for a sign that it
happened, with a deadline; and a test that checks that something did *not* happen first
waits for a positive sign that it would have shown by now (a later event, a status).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    within: float = 30.0,
    every: float = 0.1,
    what: str | None = None,
) -> T:
    """Call `check` until it returns something truthy without raising `AssertionError`, and
    return that. After `within` seconds, fail with the last assertion (or what was seen).

        job = await eventually(lambda: job_status(job_id), what="the job to be sent")
        await eventually(assert_delivered, within=60)   # an `async def` that asserts
    """
    deadline = time.monotonic() + within
    last_error: AssertionError | None = None
    last_value: object = None
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
        await asyncio.sleep(every)
