"""Jobs parked until their login user signs in (at the device's [OAuth 2.0] screen).

A parked job leaves the work queue and waits in a KV bucket. It goes back to the queue as
soon as the user's grant exists — told by a token event, or found by the sweep if that
event was missed — or fails with a clear reason when its deadline passes. Whichever
replica deletes the entry (at its revision) is the one that acts, so a job is resumed or
failed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from faststream.nats import NatsBroker
from fleetmail_contracts import streams
from fleetmail_contracts.jobs import JobBase, JobFunction, job_command_adapter, resumed_job_subject
from fleetmail_contracts.tokens import Principal, PrincipalKind
from fleetmail_runtime.bus import BusUnavailable, DeclaredBucket, bus_errors
from nats.js.errors import KeyWrongLastSequenceError, NoKeysError, NotFoundError

log = logging.getLogger(__name__)


def user_prefix(tenant_id: str, user: str) -> str:
    # KV keys allow no '@': the user is named by a digest of the address.
    return f"{tenant_id}.{hashlib.sha256(user.casefold().encode()).hexdigest()[:24]}."


@dataclass(frozen=True)
class Parked:
    key: str
    revision: int
    job_json: str
    function: JobFunction
    tenant_id: str
    user: str
    deadline: datetime


Expired = Callable[[JobBase, JobFunction, str], Awaitable[None]]
HasGrant = Callable[[Principal], Awaitable[bool]]


class KvParkingLot(DeclaredBucket):
    def __init__(
        self,
        broker: NatsBroker,
        timeout: timedelta,
        on_expired: Expired,
        has_grant: HasGrant,
        clock: Callable[[], datetime],
        bucket: str = streams.PARKED_JOBS_BUCKET,
    ) -> None:
        super().__init__(broker, bucket)
        self.timeout = timeout
        self.on_expired = on_expired
        self.has_grant = has_grant
        self.clock = clock

    async def park(self, job: JobBase, function: JobFunction, user: str, job_json: bytes) -> datetime:
        deadline = self.clock() + self.timeout
        record = {
            "job": job_json.decode(),
            "function": function.value,
            "tenant_id": job.tenant_id,
            "user": user,
            "deadline": deadline.isoformat(),
        }
        with bus_errors("the parked jobs bucket cannot be written"):
            await self.kv.put(user_prefix(job.tenant_id, user) + job.job_id, json.dumps(record).encode())
        return deadline

    async def _entries(self, prefix: str = "") -> list[Parked]:
        with bus_errors("the parked jobs bucket cannot be read"):
            try:
                keys = await self.kv.keys()
            except NoKeysError:
                return []
            found = []
            for key in keys:
                if not key.startswith(prefix):
                    continue
                try:
                    entry = await self.kv.get(key)
                except NotFoundError:
                    continue
                if not entry.value:
                    continue
                record = json.loads(entry.value)
                found.append(
                    Parked(
                        key,
                        int(entry.revision or 0),
                        record["job"],
                        JobFunction(record["function"]),
                        record["tenant_id"],
                        record["user"],
                        datetime.fromisoformat(record["deadline"]),
                    )
                )
            return found

    async def parked_jobs(self) -> list[str]:
        """Every parked job's command (JSON): their documents stay while they wait."""
        return [parked.job_json for parked in await self._entries()]

    async def _claim(self, parked: Parked) -> bool:
        with bus_errors("the parked jobs bucket cannot be written"):
            try:
                await self.kv.delete(parked.key, last=parked.revision)
            except (KeyWrongLastSequenceError, NotFoundError):
                return False  # another replica took it
        return True

    async def resume_user(self, tenant_id: str, user: str) -> int:
        """The user signed in: their parked jobs go back to the queue."""
        resumed = 0
        for parked in await self._entries(user_prefix(tenant_id, user)):
            if await self._claim(parked):
                await self._requeue(parked)
                resumed += 1
        return resumed

    async def _requeue(self, parked: Parked) -> None:
        job_id = parked.key.rsplit(".", 1)[-1]
        await self.put_back(parked.job_json.encode(), parked.function, f"{job_id}.resumed.{parked.revision}")
        log.info("job %s resumed: its user signed in", job_id)

    async def put_back(self, job_json: bytes, function: JobFunction, copy_id: str) -> None:
        """The job back on the queue as a new message (its deliveries counted from one again)."""
        with bus_errors(f"{streams.JOBS_STREAM} did not take a job put back"):
            await self.broker.publish(
                job_json,
                resumed_job_subject(function),
                # A new id: the job's own id may still be inside the duplicate window.
                headers={"Nats-Msg-Id": copy_id, "content-type": "application/json"},
                stream=streams.JOBS_STREAM,
            )

    async def sweep(self) -> None:
        """Fail what waited too long; resume what a missed token event would have resumed."""
        for parked in await self._entries():
            try:
                if self.clock() >= parked.deadline:
                    if await self._claim(parked):
                        job = job_command_adapter.validate_json(parked.job_json)
                        await self.on_expired(job, parked.function, parked.user)
                elif await self.has_grant(
                    Principal(tenant_id=parked.tenant_id, kind=PrincipalKind.USER, address=parked.user)
                ):
                    if await self._claim(parked):
                        await self._requeue(parked)
            except BusUnavailable as exc:
                log.warning("parked job %s not checked this time: %s", parked.key, exc)
