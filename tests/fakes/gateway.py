"""In-memory fakes of job-gateway's ports (`job_gateway.ports`). The store runs the same
contract suite as the MongoDB adapter (`tests/contracts/gateway_store.py`), so it cannot
drift from it; the others record what they were asked and fail when told to."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from fleetmail_contracts.jobs import AttachmentRef
from fleetmail_contracts.rpc import RpcFailure
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_runtime.bus import BusUnavailable, RequestFailed
from job_gateway.credentials import HashKey
from job_gateway.domain import TIMELINE_LENGTH, UNFINISHED_STATUSES, StatusUpdate, may_change
from job_gateway.errors import AttachmentTooLarge
from job_gateway.ports import StoredApiKey, TenantCounts, TenantDigest
from job_gateway.schemas import TsiRoutingTable
from nats.errors import NoRespondersError
from pydantic import BaseModel
from starlette.datastructures import UploadFile

R = TypeVar("R", bound=BaseModel)


class InMemoryGatewayStore:
    """`job_gateway.ports.GatewayStore` in dictionaries."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantSettings] = {}
        self.devices: dict[tuple[str, str], dict[str, Any]] = {}
        self.api_keys: dict[str, StoredApiKey] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tsi_routing_tables: dict[str, tuple[TsiRoutingTable, int]] = {}
        self.device_counts: dict[str, int] = {}

    async def tsi_routing(self, tenant_id: str) -> tuple[TsiRoutingTable, int]:
        return self.tsi_routing_tables.get(tenant_id, (TsiRoutingTable(), 0))

    async def save_tsi_routing(self, tenant_id: str, table: TsiRoutingTable, expected: int) -> bool:
        if (await self.tsi_routing(tenant_id))[1] != expected:
            return False
        self.tsi_routing_tables[tenant_id] = (table.model_copy(deep=True), expected + 1)
        return True

    async def save_tenant(self, settings: TenantSettings) -> None:
        self.tenants[settings.tenant_id] = settings

    async def tenant(self, tenant_id: str) -> TenantSettings | None:
        return self.tenants.get(tenant_id)

    async def all_tenants(self) -> list[TenantSettings]:
        return list(self.tenants.values())

    async def save_device(
        self,
        tenant_id: str,
        device_id: str,
        name: str,
        secret_hash: str,
        now: datetime,
        allow_cidrs: list[str] | None = None,
        smtp_function: str | None = None,
        smtp_rules: list[dict[str, Any]] | None = None,
    ) -> None:
        key = (tenant_id, device_id)
        if key not in self.devices:
            self.device_counts[tenant_id] = self.device_counts.get(tenant_id, 0) + 1
        self.devices[key] = {
            "_id": self.devices.get(key, {}).get("_id", f"{tenant_id}/{device_id}"),
            "device_id": device_id,
            "tenant_id": tenant_id,
            "name": name,
            "secret_hash": secret_hash,
            "disabled": False,
            "created_at": now,
            "allow_cidrs": allow_cidrs or [],
            "smtp_function": smtp_function,
            "smtp_rules": smtp_rules or [],
        }

    async def device(self, tenant_id: str, device_id: str) -> dict[str, Any] | None:
        found = self.devices.get((tenant_id, device_id))
        return copy.deepcopy(found) if found is not None else None

    async def devices_named(self, device_id: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for (_, named), d in sorted(self.devices.items()) if named == device_id]

    async def update_device(
        self, tenant_id: str, device_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if (tenant_id, device_id) in self.devices and changes:
            self.devices[tenant_id, device_id].update(changes)
        return await self.device(tenant_id, device_id)

    async def list_devices(self, tenant_id: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in d.items() if k != "secret_hash"}
            for (tenant, _), d in sorted(self.devices.items())
            if tenant == tenant_id
        ]

    async def devices_with_allowlist(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in d.items() if k != "secret_hash"}
            for d in self.devices.values()
            if d["allow_cidrs"]
        ]

    async def add_session_user(
        self, tenant_id: str, device_id: str, user: str, limit: int, signed_in: bool = False
    ) -> bool:
        device = self.devices.get((tenant_id, device_id))
        if device is None:
            return False
        listed = device.setdefault("signed_in_users" if signed_in else "session_users", [])
        if user in listed:
            return True
        if len(listed) >= limit:
            return False
        listed.append(user)
        return True

    async def remove_session_users(self, tenant_id: str, device_id: str, users: Sequence[str]) -> None:
        device = self.devices.get((tenant_id, device_id))
        if device is not None:
            for field in ("session_users", "signed_in_users"):
                device[field] = [u for u in device.get(field, []) if u not in users]

    async def save_api_key(self, key: StoredApiKey) -> None:
        if key.key_id in self.api_keys:
            raise KeyError(key.key_id)
        self.api_keys[key.key_id] = key

    async def api_key(self, key_id: str) -> StoredApiKey | None:
        return self.api_keys.get(key_id)

    async def list_api_keys(self) -> list[StoredApiKey]:
        return sorted(self.api_keys.values(), key=lambda key: key.created_at)

    async def delete_api_key(self, key_id: str) -> bool:
        return self.api_keys.pop(key_id, None) is not None

    async def rehash_api_key(self, key_id: str, old_hash: str, new_hash: str, hash_key: HashKey) -> bool:
        stored = self.api_keys.get(key_id)
        if stored is None or stored.secret_hash != old_hash:
            return False
        self.api_keys[key_id] = replace(stored, secret_hash=new_hash, hash_key=hash_key)
        return True

    async def record_job(self, document: Mapping[str, Any]) -> bool:
        if document["_id"] in self.jobs:
            return False
        self.jobs[document["_id"]] = dict(document)
        return True

    async def forget_job(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    async def mark_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        if job_id in self.jobs:
            self.jobs[job_id].update(fields)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        found = self.jobs.get(job_id)
        return dict(found) if found is not None else None

    async def requeue_job(self, job_id: str, at: datetime) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            for key in ("detail", "remedy", "reason_code", "smtp_reply"):
                job.pop(key, None)
            job.update(status="queued", updated_at=at)
            _append(job, {"kind": "resent", "at": at})

    async def search_jobs(
        self,
        tenant_id: str,
        status: str | None,
        device_id: str | None,
        function: str | None,
        before: datetime | None,
        limit: int,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        found = [
            dict(job)
            for job in self.jobs.values()
            if job["tenant_id"] == tenant_id
            and all(
                value is None or job.get(key) == value
                for key, value in (("status", status), ("device_id", device_id), ("function", function))
            )
            and (before is None or job["submitted_at"] < before)
            and (since is None or job["submitted_at"] >= since)
        ]
        return sorted(found, key=lambda job: job["submitted_at"], reverse=True)[:limit]

    async def job_counts(self, tenant_id: str, since: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            if job["tenant_id"] == tenant_id and job["submitted_at"] >= since:
                counts[job["status"]] = counts.get(job["status"], 0) + 1
        return counts

    async def tenant_digests(self) -> list[TenantDigest]:
        return [
            TenantDigest(t.tenant_id, t.display_name, t.oauth_enabled, t.provider, t.administrator_address)
            for t in self.tenants.values()
        ]

    async def tenant_counts(
        self, tenant_ids: Sequence[str] | None, since: datetime
    ) -> dict[str, TenantCounts]:
        found: dict[str, dict[str, int]] = {}
        waiting: dict[str, dict[str, int]] = {}

        def add(tenant_id: str, figure: str, into: dict[str, dict[str, int]] = found) -> None:
            if tenant_ids is None or tenant_id in tenant_ids:
                figures = into.setdefault(tenant_id, {})
                figures[figure] = figures.get(figure, 0) + 1

        for (tenant_id, _), _device in self.devices.items():
            add(tenant_id, "devices")
        for job in self.jobs.values():
            if job.get("dead_lettered_at") is not None and job["dead_lettered_at"] >= since:
                add(job["tenant_id"], "dead_lettered")
                if job["status"] == "failed":
                    add(job["tenant_id"], "failed")
            if job["status"] in UNFINISHED_STATUSES:
                add(job["tenant_id"], job["status"], waiting)
        return {
            tenant_id: TenantCounts(**found.get(tenant_id, {}), unfinished=waiting.get(tenant_id, {}))
            for tenant_id in found.keys() | waiting.keys()
        }

    async def update_job_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        for update in updates:
            job = self.jobs.get(update.job_id)
            if job is not None and may_change(job["status"]):
                job.update(status=update.status, updated_at=update.at, **update.fields)
                if update.entry is not None:
                    _append(job, update.entry)


def _append(job: dict[str, Any], entry: Mapping[str, Any]) -> None:
    job["timeline"] = [*job.get("timeline", []), dict(entry)][-TIMELINE_LENGTH:]


class RecordingPublisher:
    """`job_gateway.ports.Publisher`: keeps what was published. `down` makes it refuse as NATS
    does with no stream listening; `timing_out` makes it time out, after storing the message
    when `timing_out == "after storing"` (the acknowledgement lost), before otherwise."""

    def __init__(self) -> None:
        self.published: list[tuple[str, BaseModel, str | None]] = []
        self.down = False
        self.timing_out: Literal["before storing", "after storing"] | None = None

    async def publish(
        self,
        message: BaseModel,
        subject: str,
        *,
        stream: str,
        msg_id: str | None = None,
        timeout_s: float | None = None,
    ) -> bool:
        if self.down:
            raise BusUnavailable(f"{stream} did not take the message", NoRespondersError())
        if self.timing_out == "before storing":
            raise BusUnavailable(f"{stream} did not take the message", TimeoutError())
        duplicate = msg_id is not None and any(seen == msg_id for _, _, seen in self.published)
        if not duplicate:
            self.published.append((subject, message, msg_id))
        if self.timing_out == "after storing":
            raise BusUnavailable(f"{stream} did not take the message", TimeoutError())
        return duplicate


class InMemoryAttachments:
    """`job_gateway.ports.Attachments` in a dictionary; `down` makes it fail as NATS does."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down = False

    async def put(self, object_name: str, upload: UploadFile, limit: int) -> AttachmentRef:
        data = await upload.read()
        if len(data) > limit:
            raise AttachmentTooLarge(f"{upload.filename} is larger than {limit} bytes")
        if self.down:
            raise BusUnavailable("the attachment could not be stored", TimeoutError())
        self.objects[object_name] = data
        return AttachmentRef(
            object_name=object_name,
            filename=upload.filename or "attachment",
            content_type=upload.content_type or "application/octet-stream",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    async def delete(self, object_name: str) -> None:
        self.objects.pop(object_name, None)


class ScriptedRequester:
    """`job_gateway.ports.Requester`: answers each subject with what the test scripted (a
    model, raw JSON that may not parse, an `RpcFailure`, or silence), and keeps what was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, BaseModel | str | None] = {}
        self.asked: list[tuple[str, BaseModel]] = []

    async def request(
        self, message: BaseModel, subject: str, reply: type[R], *, timeout_s: float | None = None
    ) -> R:
        self.asked.append((subject, message))
        answer = self.answers.get(subject)
        if answer is None:
            raise BusUnavailable(f"no answer on {subject}", TimeoutError())
        if isinstance(answer, RpcFailure):  # what the bus makes of a failure answer
            raise RequestFailed(subject, answer)
        raw = answer if isinstance(answer, str) else answer.model_dump_json()
        return reply.model_validate_json(raw)


class InMemoryTenantFeed:
    """The `TenantFeed` port: what the tenants bucket would hold, by tenant."""

    def __init__(self) -> None:
        self.published: dict[str, TenantSettings] = {}

    async def put(self, settings: TenantSettings) -> None:
        self.published[settings.tenant_id] = settings

    def cached(self, tenant_id: str) -> TenantSettings | None:
        return self.published.get(tenant_id)
