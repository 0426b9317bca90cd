"""The attachment sweep's cost with many jobs queued: JetStream requests and seconds for one
sweep, against the sweep as it was (every meta message, queued job and dead letter read by
sequence, one request each), measured in the same run on a nats-server of its own (the
stack's mail-service would take the queued jobs).

Two cases: every object younger than the grace (the usual state: the sweep only lists the
store), and a backlog older than the grace (every object a candidate: what holds them is
looked up).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetmail_contracts import streams
from fleetmail_contracts.jobs import JobBase, JobFunction
from fleetmail_contracts.tokens import Principal
from fleetmail_devkit.stack import Stack, venv_binary
from fleetmail_runtime.lifecycle import ServiceRuntime
from fleetmail_runtime.settings import CommonSettings
from mail_service.adapters.attachments import ObjectStoreAttachments
from mail_service.adapters.lease import KvLease
from mail_service.adapters.parking import KvParkingLot
from mail_service.adapters.sweep import AttachmentSweep
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from .figures import Figure

JOBS = 10_000
DEAD_LETTERS = 500
GRACE = timedelta(hours=1)
BUCKET = streams.ATTACHMENTS_BUCKET


@contextlib.asynccontextmanager
async def nats_server() -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="fleetmail-bench-sweep-") as data:
        argv = [venv_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", data]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                    break
                await asyncio.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


async def fill(runtime: ServiceRuntime) -> None:
    """JOBS queued jobs with one small object each, and DEAD_LETTERS dead letters."""
    js = runtime.broker.connection.jetstream()
    publishes: list[Awaitable[Any]] = []
    for n in range(JOBS):
        delivery, nuid = uuid.uuid4().hex, uuid.uuid4().hex
        name = f"{delivery}/{uuid.uuid4().hex}/0"
        meta = {"name": name, "bucket": BUCKET, "nuid": nuid, "size": 9, "chunks": 1, "digest": ""}
        encoded = base64.urlsafe_b64encode(name.encode()).decode()
        job = {"job_id": delivery, "attachments": [{"object_name": name}]}
        publishes += [
            js.publish(f"$O.{BUCKET}.C.{nuid}", b"%PDF-1.4 ", stream=f"OBJ_{BUCKET}"),
            js.publish(f"$O.{BUCKET}.M.{encoded}", json.dumps(meta).encode(), stream=f"OBJ_{BUCKET}"),
            js.publish("fleetmail.jobs.v1.bench", json.dumps(job).encode(), stream=streams.JOBS_STREAM),
        ]
        if n < DEAD_LETTERS:
            letter = {"payload_b64": base64.b64encode(b"{}").decode()}
            publishes.append(js.publish(f"{streams.DLQ_PREFIX}mail-service", json.dumps(letter).encode()))
        if len(publishes) > 2000:
            await asyncio.gather(*publishes)
            publishes = []
    await asyncio.gather(*publishes)


def count_requests(runtime: ServiceRuntime) -> list[int]:
    """Counts every JetStream API call the connection makes: its requests, and the batched
    direct gets it publishes with a reply inbox of its own."""
    connection = runtime.broker.connection
    counter, requesting = [0], [0]
    request, publish = connection.request, connection.publish

    async def counted_request(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        requesting[0] += 1  # a request publishes: that publish is this call, not another
        try:
            return await request(*args, **kwargs)
        finally:
            requesting[0] -= 1

    async def counted_publish(subject: str, *args: Any, **kwargs: Any) -> Any:
        counter[0] += not requesting[0] and subject.startswith("$JS.API.")
        return await publish(subject, *args, **kwargs)

    connection.request = counted_request  # type: ignore[method-assign]
    connection.publish = counted_publish  # type: ignore[method-assign]
    return counter


async def stream_messages(runtime: ServiceRuntime, stream: str, subject: str) -> AsyncIterator[RawStreamMsg]:
    """Read by sequence, one request per message (the way the sweep read before)."""
    js = runtime.broker.connection.jetstream()
    sequence = 1
    while True:
        try:
            msg = await js.get_msg(stream, sequence, subject=subject, next=True)
        except NotFoundError:
            return
        yield msg
        sequence = int(msg.seq or sequence) + 1


async def old_sweep(runtime: ServiceRuntime, candidates: bool) -> None:
    """What the sweep read before: every meta message by sequence; with candidates, every
    queued job and dead letter too."""
    async for _ in stream_messages(runtime, f"OBJ_{BUCKET}", f"$O.{BUCKET}.M.>"):
        pass
    if candidates:
        for stream, subject in (
            (streams.JOBS_STREAM, "fleetmail.jobs.>"),
            (streams.DLQ_STREAM, "fleetmail.dlq.>"),
        ):
            async for msg in stream_messages(runtime, stream, subject):
                json.loads(msg.data or b"{}")


async def no_expiry(job: JobBase, function: JobFunction, user: str, administrator: bool) -> None:
    raise AssertionError("no job is parked here")


async def no_grant(principal: Principal) -> bool:
    return False


async def measure(counter: list[int], sweep: Callable[[], Awaitable[None]]) -> tuple[float, int]:
    before, started = counter[0], time.perf_counter()
    await sweep()
    return time.perf_counter() - started, counter[0] - before


async def run(stack: Stack | None = None) -> list[Figure]:
    figures: list[Figure] = []
    async with nats_server() as url:
        runtime = ServiceRuntime("mail-service", CommonSettings(nats_url=url), mongo=False)
        async with runtime.lifespan():
            await fill(runtime)
            counter = count_requests(runtime)
            for case, ahead in (("fresh", timedelta(0)), ("backlog", GRACE + timedelta(minutes=1))):

                def clock(ahead: timedelta = ahead) -> datetime:
                    return datetime.now(UTC) + ahead

                attachments = ObjectStoreAttachments(runtime.broker)
                parking = KvParkingLot(runtime.broker, timedelta(minutes=15), no_expiry, no_grant, clock)
                lease = KvLease(
                    runtime.broker,
                    streams.DELIVERY_LEDGER_BUCKET,
                    "lease.bench",
                    case,
                    timedelta(minutes=5),
                    clock,
                )
                for part in (attachments, parking, lease):
                    await part.open()
                sweep = AttachmentSweep(
                    runtime.broker,
                    attachments,
                    parking,
                    lease,
                    clock,
                    grace=GRACE,
                    retention=timedelta(days=7),
                    max_bytes=0,
                    alert_percent=80,
                )
                backlog = case == "backlog"
                old_s, old_calls = await measure(counter, functools.partial(old_sweep, runtime, backlog))
                new_s, new_calls = await measure(counter, sweep.sweep)
                label = f"mail.attachment_sweep_{{}}_{JOBS // 1000}k_jobs_{case}"
                figures += [
                    Figure(label.format("requests"), new_calls, "calls", "read by sequence", old_calls),
                    Figure(label.format("seconds"), new_s, "s", "read by sequence", old_s),
                ]
    return figures


if __name__ == "__main__":
    for figure in asyncio.run(run()):
        print(figure)
