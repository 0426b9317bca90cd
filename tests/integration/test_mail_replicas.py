"""Two mail-service replicas share the work: each job delivered once, none lost when one dies.

Which replica delivered a job is read from its `sent` event, whose `Fleetmail-Replica`
header names the publishing process (`host:pid`).
"""

import contextlib
import json
import signal
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import nats
import pytest
from fleetmail_contracts.mail_events import mail_event_subject
from fleetmail_devkit.probes import queue_jobs, tenant_with_administrator_grant, wait_for_delivered
from fleetmail_devkit.stack import Part
from mail_service.adapters.events import REPLICA_HEADER

from tests.utils import eventually

JOBS = 500
IN_FLIGHT = 16  # mail-service's fetch batch: the most jobs a killed replica can hold


async def wait_for(stack, http, tag: str, expected: set[str], seconds: float = 180) -> Counter:
    return await wait_for_delivered(stack, http, tag, lambda seen: expected <= set(seen), seconds, 0.5)


@contextlib.asynccontextmanager
async def sent_events(stack) -> AsyncIterator[dict[str, list[str]]]:
    """While the block runs: job id → the replica named by each of its `sent` events."""
    senders: dict[str, list[str]] = defaultdict(list)
    client = await nats.connect(stack.nats_url)

    async def note(message) -> None:
        senders[json.loads(message.data)["job_id"]].append((message.headers or {}).get(REPLICA_HEADER, "?"))

    # A plain subscription sees each event as JetStream stores it.
    subscription = await client.subscribe(mail_event_subject("sent"), cb=note)
    try:
        yield senders
    finally:
        await subscription.unsubscribe()
        await client.close()


def pid_of(replica: str) -> int:
    """The process id in a `host:pid` replica name (-1 for an event that names none)."""
    _, _, pid = replica.rpartition(":")
    return int(pid) if pid.isdigit() else -1


def pids(*parts: Part) -> set[int]:
    return {p.process.pid for p in parts if p.process is not None}


def jobs_by_replica(senders: dict[str, list[str]], tag: str) -> Counter[int]:
    return Counter(
        pid_of(replica) for job_id, names in senders.items() if job_id.startswith(tag) for replica in names
    )


@pytest.mark.timeout(240)
async def test_two_replicas_deliver_each_job_exactly_once(stack, emulator_http) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    first = stack.part("mail-service")
    replica = await stack.add_replica("mail-service")
    try:
        tag = f"rep-{uuid.uuid4().hex[:6]}"
        async with sent_events(stack) as senders:
            expected = await queue_jobs(stack, principal.tenant_id, JOBS, tag)
            seen = await wait_for(stack, emulator_http, tag, expected)
            await eventually(
                lambda: sum(1 for j in senders if j.startswith(tag)) == JOBS,
                within=30,
                what="a sent event for every job",
            )
        assert set(seen) == expected
        assert max(seen.values()) == 1, [m for m, n in seen.items() if n > 1]
        assert all(len(senders[j]) == 1 for j in senders if j.startswith(tag)), "a job was sent twice"
        by_replica = jobs_by_replica(senders, tag)
        # Both replicas delivered part of the work, and no one else did.
        assert set(by_replica) == pids(first, replica), by_replica
        assert all(count > 0 for count in by_replica.values()) and by_replica.total() == JOBS
    finally:
        await stack.stop_part(replica)


@pytest.mark.timeout(240)
async def test_a_replica_killed_mid_run_loses_nothing(stack, emulator_http) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    first = stack.part("mail-service")
    replica = await stack.add_replica("mail-service")
    assert replica.process is not None
    killed = replica.process.pid
    tag = f"kill-{uuid.uuid4().hex[:6]}"
    async with sent_events(stack) as senders:
        expected = await queue_jobs(stack, principal.tenant_id, JOBS, tag)
        # Mid-run: a quarter of the jobs delivered, some of them by the replica about to die.
        await wait_for_delivered(stack, emulator_http, tag, lambda seen: seen.total() >= JOBS // 4, 30, 0.05)
        await eventually(
            lambda: jobs_by_replica(senders, tag)[killed] > 0, within=30, what="the replica to deliver"
        )
        replica.process.send_signal(signal.SIGKILL)  # a crash, not a shutdown
        await replica.process.wait()
        await stack.stop_part(replica)
        seen = await wait_for(stack, emulator_http, tag, expected)
    assert set(seen) == expected, f"lost {len(expected - set(seen))} jobs"
    # The one window SMTP cannot close: the server accepted DATA, the process died before
    # its ledger write. Only jobs in flight at the kill (one fetch batch) can be in it.
    duplicates = [m for m, n in seen.items() if n > 1]
    assert len(duplicates) <= IN_FLIGHT, duplicates
    by_replica = jobs_by_replica(senders, tag)
    assert set(by_replica) == {killed, *pids(first)}, by_replica
    assert 0 < by_replica[killed] < JOBS and by_replica[first.process.pid] > 0
