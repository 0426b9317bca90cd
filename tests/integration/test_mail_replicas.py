"""Two mail-service replicas share the work: each job delivered once, none lost when one dies."""

import signal
import uuid
from collections import Counter

from fleetmail_devkit.probes import queue_jobs, tenant_with_administrator_grant, wait_for_delivered

JOBS = 500


async def wait_for(stack, http, tag: str, expected: set[str], seconds: float = 180) -> Counter:
    return await wait_for_delivered(stack, http, tag, lambda seen: expected <= set(seen), seconds, 0.5)


async def test_two_replicas_deliver_each_job_exactly_once(stack, emulator_http) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    replica = await stack.add_replica("mail-service")
    try:
        tag = f"rep-{uuid.uuid4().hex[:6]}"
        expected = await queue_jobs(stack, principal.tenant_id, JOBS, tag)
        seen = await wait_for(stack, emulator_http, tag, expected)
        assert set(seen) == expected
        assert max(seen.values()) == 1, [m for m, n in seen.items() if n > 1]
    finally:
        await stack.stop_part(replica)


async def test_a_replica_killed_mid_run_loses_nothing(stack, emulator_http) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    replica = await stack.add_replica("mail-service")
    tag = f"kill-{uuid.uuid4().hex[:6]}"
    expected = await queue_jobs(stack, principal.tenant_id, JOBS, tag)
    await wait_for_delivered(stack, emulator_http, tag, lambda seen: seen.total() >= JOBS // 4, 30, 0.05)
    assert replica.process is not None
    replica.process.send_signal(signal.SIGKILL)  # a crash, not a shutdown
    await replica.process.wait()
    await stack.stop_part(replica)
    seen = await wait_for(stack, emulator_http, tag, expected)
    assert set(seen) == expected, f"lost {len(expected - set(seen))} jobs"
    # The one window SMTP cannot close: the server accepted DATA, the process died before
    # its ledger write. Only jobs in flight at the kill (one fetch batch) can be in it.
    duplicates = [m for m, n in seen.items() if n > 1]
    assert len(duplicates) <= 16, duplicates
