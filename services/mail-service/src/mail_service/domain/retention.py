"""How long a job's documents are kept, and which stored objects the sweep removes. Pure.

A job's documents are deleted once the job is final: sent (as soon as the ledger holds it),
or dead-lettered and past the dead letters' retention. A resend puts the same job, naming the
same objects, back in the queue, where it holds them again until it is final in its turn.
The sweep removes what nothing holds any more — the documents of expired dead letters, and
orphans left by crashes (an upload whose job was never queued, a deletion cut short) — but
only objects older than a grace period (an upload whose job is being queued is held by
nothing yet) and only when the previous sweep found them unheld too: a job moving between
the queue, the parking lot and the dead letters is in none of them for an instant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class StoredObject:
    name: str
    stored_at: datetime
    size: int = 0


@dataclass(frozen=True)
class Holds:
    """What keeps documents: the jobs queued, in flight or parked (`live`), and the dead
    letters (`dead_since`: each object's most recent dead letter's failure time)."""

    live: frozenset[str] = frozenset()
    dead_since: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPlan:
    remove: tuple[str, ...]
    """Unheld now and at the previous sweep: removed now."""
    suspects: frozenset[str]
    """Unheld for the first time: removed at the next sweep if still unheld."""


def object_names(job: Mapping[str, Any]) -> list[str]:
    """The objects a job command names (read leniently: a dead letter may hold a job that
    no longer validates)."""
    attachments = job.get("attachments")
    if not isinstance(attachments, list):
        return []
    return [
        a["object_name"] for a in attachments if isinstance(a, dict) and isinstance(a.get("object_name"), str)
    ]


def names_in_json(job_json: str | bytes) -> list[str]:
    try:
        job = json.loads(job_json)
    except ValueError:
        return []
    return object_names(job) if isinstance(job, dict) else []


def delivery_of(name: str) -> str:
    """The delivery id of the job an object was stored for: its name's first part
    (`<delivery id>/<submission>/<n>`, as job-gateway names them)."""
    return name.split("/", 1)[0]


def retained(failed_at: datetime, now: datetime, retention: timedelta) -> bool:
    """Whether a dead letter still holds its documents (so that it can be resent)."""
    return now < failed_at + retention


def plan_sweep(
    objects: Iterable[StoredObject],
    holds: Holds,
    suspects: frozenset[str],
    *,
    now: datetime,
    grace: timedelta,
    retention: timedelta,
) -> SweepPlan:
    unheld: set[str] = set()
    for stored in objects:
        if now - stored.stored_at < grace or stored.name in holds.live:
            continue
        failed_at = holds.dead_since.get(stored.name)
        if failed_at is not None and retained(failed_at, now, retention):
            continue
        unheld.add(stored.name)
    remove = unheld & suspects
    return SweepPlan(tuple(sorted(remove)), frozenset(unheld - remove))


def over_threshold(used_bytes: int, max_bytes: int, percent: float) -> bool:
    """Whether the store's use passed the alert threshold (a store without a limit never does)."""
    return max_bytes > 0 and used_bytes >= max_bytes * percent / 100
