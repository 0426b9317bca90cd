"""Jobs parked until their login user signs in (at the device's [OAuth 2.0] screen), or
until the tenant's administrator token is acquired for the first time.

A parked job leaves the work queue and waits in a KV bucket. It goes back to the queue as
soon as the grant exists — told by a token event, or found by the sweep if that event was
missed — or fails with a clear reason when its deadline passes (a login user's and the
administrator's deadlines are separate settings: a user at the device signs in within
minutes, an administrator may come the next day). A job waiting for the administrator is
kept under the tenant, not the address: whichever administrator signs in releases it.

A replica *claims* an entry before it acts: it rewrites the entry at the revision it read, so
of two replicas only one claims it. The entry is deleted only after the job is back in the
queue (or dead-lettered): a bus outage or a crash in between leaves it parked, claimed, and
the next sweep acts again. A resumed job is published under the id of its first claim, kept
in the entry, so acting again within JetStream's duplicate window queues it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
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


def administrator_prefix(tenant_id: str) -> str:
    # Not a digest: no user's prefix can be this one.
    return f"{tenant_id}.administrator."


@dataclass(frozen=True)
class Parked:
    key: str
    revision: int
    job_json: str
    function: JobFunction
    tenant_id: str
    user: str
    deadline: datetime
    claim: str | None = None
    """The `Nats-Msg-Id` of the job's resumption, set by the first claim."""
    administrator: bool = False
    """The job waits for the administrator's token, not for `user` at a device."""

    @property
    def principal(self) -> Principal:
        kind = PrincipalKind.ADMINISTRATOR if self.administrator else PrincipalKind.USER
        return Principal(tenant_id=self.tenant_id, kind=kind, address=self.user)

    @property
    def job_id(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    def record(self, claim: str) -> bytes:
        return json.dumps(
            {
                "job": self.job_json,
                "function": self.function.value,
                "tenant_id": self.tenant_id,
                "user": self.user,
                "deadline": self.deadline.isoformat(),
                "claim": claim,
                "administrator": self.administrator,
            }
        ).encode()


Expired = Callable[[JobBase, JobFunction, str, bool], Awaitable[None]]
"""Told a parked job's deadline passed: the job, its function, whom it waited for, and
whether that was the administrator."""
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
        administrator_timeout: timedelta = timedelta(hours=24),
    ) -> None:
        super().__init__(broker, bucket)
        self.timeout = timeout
        self.administrator_timeout = administrator_timeout
        self.on_expired = on_expired
        self.has_grant = has_grant
        self.clock = clock

    async def park(
        self, job: JobBase, function: JobFunction, user: str, job_json: bytes, *, administrator: bool = False
    ) -> datetime:
        deadline = self.clock() + (self.administrator_timeout if administrator else self.timeout)
        record = {
            "job": job_json.decode(),
            "function": function.value,
            "tenant_id": job.tenant_id,
            "user": user,
            "deadline": deadline.isoformat(),
            "administrator": administrator,
        }
        prefix = administrator_prefix(job.tenant_id) if administrator else user_prefix(job.tenant_id, user)
        with bus_errors("the parked jobs bucket cannot be written"):
            await self.kv.put(prefix + job.job_id, json.dumps(record).encode())
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
                        record.get("claim"),
                        bool(record.get("administrator", False)),
                    )
                )
            return found

    async def parked_ids(self) -> set[str]:
        """The ids of the jobs parked (claimed or not): their keys alone, no entry read."""
        with bus_errors("the parked jobs bucket cannot be read"):
            try:
                return {key.rsplit(".", 1)[-1] for key in await self.kv.keys()}
            except NoKeysError:
                return set()

    async def parked_jobs(self) -> list[str]:
        """Every parked job's command (JSON): their documents stay while they wait."""
        return [parked.job_json for parked in await self._entries()]

    async def _claim(self, parked: Parked) -> tuple[str, int] | None:
        """Rewrite the entry at the revision read: the claim's id and the entry's new revision,
        or None when another replica changed or removed it first."""
        claim = parked.claim or f"{parked.job_id}.resumed.{parked.revision}"
        with bus_errors("the parked jobs bucket cannot be written"):
            try:
                revision = await self.kv.update(parked.key, parked.record(claim), last=parked.revision)
            except (KeyWrongLastSequenceError, NotFoundError):
                return None
        return claim, int(revision)

    async def _release(self, parked: Parked, revision: int) -> None:
        """The job is queued or dead-lettered: its entry goes (unless claimed again meanwhile)."""
        with bus_errors("the parked jobs bucket cannot be written"):
            try:
                await self.kv.delete(parked.key, last=revision)
            except (KeyWrongLastSequenceError, NotFoundError):
                log.info("parked job %s was claimed again while it was acted on", parked.key)

    async def resume_user(self, tenant_id: str, user: str) -> int:
        """The user signed in: their parked jobs go back to the queue."""
        return await self._resume_all(user_prefix(tenant_id, user))

    async def resume_administrator(self, tenant_id: str) -> int:
        """The administrator token was acquired: the jobs that waited for it go back to the queue."""
        return await self._resume_all(administrator_prefix(tenant_id))

    async def _resume_all(self, prefix: str) -> int:
        resumed = 0
        for parked in await self._entries(prefix):
            if await self._resume(parked):
                resumed += 1
        return resumed

    async def _resume(self, parked: Parked) -> bool:
        claimed = await self._claim(parked)
        if claimed is None:
            return False  # another replica took it
        claim, revision = claimed
        with bus_errors(f"{streams.JOBS_STREAM} did not take a resumed job"):
            await self.broker.publish(
                parked.job_json.encode(),
                resumed_job_subject(parked.function),
                # Not the job's own id, which may still be inside the duplicate window.
                headers={"Nats-Msg-Id": claim, "content-type": "application/json"},
                stream=streams.JOBS_STREAM,
            )
        await self._release(parked, revision)
        log.info("job %s resumed: %s signed in", parked.job_id, parked.principal.kind.value)
        return True

    async def _expire(self, parked: Parked) -> None:
        claimed = await self._claim(parked)
        if claimed is None:
            return
        job = job_command_adapter.validate_json(parked.job_json)
        await self.on_expired(job, parked.function, parked.user, parked.administrator)
        await self._release(parked, claimed[1])

    async def put_back(
        self, job_json: bytes, function: JobFunction, copy_id: str, headers: Mapping[str, str]
    ) -> None:
        """The job back on the queue as a new message (JetStream counts its deliveries from one
        again); `copy_id` is made from the message it replaces, so putting it back twice
        queues it once."""
        with bus_errors(f"{streams.JOBS_STREAM} did not take a job put back"):
            await self.broker.publish(
                job_json,
                resumed_job_subject(function),
                headers={**headers, "Nats-Msg-Id": copy_id, "content-type": "application/json"},
                stream=streams.JOBS_STREAM,
            )

    async def sweep(self) -> None:
        """Fail what waited too long; resume what a missed token event would have resumed."""
        for parked in await self._entries():
            try:
                if self.clock() >= parked.deadline:
                    await self._expire(parked)
                elif await self.has_grant(parked.principal):
                    await self._resume(parked)
            except BusUnavailable as exc:
                log.warning("parked job %s not checked this time: %s", parked.key, exc)
