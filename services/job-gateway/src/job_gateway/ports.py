"""What the use cases need from the world, as Protocols: MongoDB (`adapters.mongo`), JetStream
(`adapters.jetstream`, `adapters.dead_letters`) and the bus's request/reply and publishing
(`fleetmail_runtime.bus.Bus`) satisfy them, and so do the in-memory fakes of the tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from fleetmail_contracts.dead_letters import DeadLetter
from fleetmail_contracts.jobs import AttachmentRef
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import Provider
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from .credentials import HashKey
from .domain import Role, StatusUpdate
from .schemas import DeadLetterPage, QueueView, TsiRoutingTable

R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class StoredApiKey:
    key_id: str
    name: str
    role: Role
    tenant_ids: tuple[str, ...] | None
    secret_hash: str
    hash_key: HashKey
    """The server key `secret_hash` was made with (DEVICE: made before API keys had their own)."""
    created_at: datetime


class TenantStore(Protocol):
    async def save_tenant(self, settings: TenantSettings) -> None: ...
    async def tenant(self, tenant_id: str) -> TenantSettings | None: ...
    async def all_tenants(self) -> list[TenantSettings]: ...


class DeviceStore(Protocol):
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
    ) -> None: ...
    async def device(self, tenant_id: str, device_id: str) -> dict[str, Any] | None:
        """The tenant's device (device ids are per tenant: another tenant may use the same)."""
        ...

    async def devices_named(self, device_id: str) -> list[dict[str, Any]]:
        """Every tenant's device with this id, with its secret hash (a login finds its own by
        the secret)."""
        ...

    async def update_device(
        self, tenant_id: str, device_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any] | None: ...
    async def list_devices(self, tenant_id: str) -> list[dict[str, Any]]: ...
    async def devices_with_allowlist(self) -> list[dict[str, Any]]:
        """Devices that may send over SMTP without AUTH (no secret hashes)."""
        ...

    async def add_session_user(
        self, tenant_id: str, device_id: str, user: str, limit: int, signed_in: bool = False
    ) -> bool:
        """A user's sign-in or job came from the device (kept until its auto reset), in
        `session_users`; `signed_in`: their sign-in there succeeded, in `signed_in_users`.
        Whether the user is listed afterwards: not when the list already holds `limit` others."""
        ...

    async def remove_session_users(self, tenant_id: str, device_id: str, users: Sequence[str]) -> None:
        """These users' sessions on the device ended (they logged out, or it reset): from both lists."""
        ...


class ApiKeyStore(Protocol):
    async def save_api_key(self, key: StoredApiKey) -> None: ...
    async def api_key(self, key_id: str) -> StoredApiKey | None: ...
    async def list_api_keys(self) -> list[StoredApiKey]:
        """Every key, oldest first."""
        ...

    async def delete_api_key(self, key_id: str) -> bool: ...
    async def rehash_api_key(self, key_id: str, old_hash: str, new_hash: str, hash_key: HashKey) -> bool:
        """Replace the key's hash if it is still `old_hash`; False when it was not."""
        ...


class JobStore(Protocol):
    async def record_job(self, document: Mapping[str, Any]) -> bool:
        """Keep a new job's status record; False when its job id is taken."""
        ...

    async def forget_job(self, job_id: str) -> None: ...
    async def mark_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Set these fields of the job's record, whatever its status."""
        ...

    async def job(self, job_id: str) -> dict[str, Any] | None: ...
    async def requeue_job(self, job_id: str, at: datetime) -> None: ...
    async def search_jobs(
        self,
        tenant_id: str,
        status: str | None,
        device_id: str | None,
        function: str | None,
        before: datetime | None,
        limit: int,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]: ...
    async def job_counts(self, tenant_id: str, since: datetime) -> dict[str, int]: ...
    async def update_job_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        """Apply the changes in order, each adding its entry to the job's timeline (the newest
        `TIMELINE_LENGTH` kept); a job in a final status keeps it, and its timeline."""
        ...


@dataclass(frozen=True)
class TenantCounts:
    """A tenant's figures on the fleet overview that job-gateway keeps itself."""

    devices: int = 0
    failed: int = 0
    """Jobs dead-lettered since the window's start that are still failed."""
    dead_lettered: int = 0
    """Jobs dead-lettered since the window's start (sent again since or not)."""
    unfinished: Mapping[str, int] = field(default_factory=dict)
    """Jobs not finished, whatever their age, by status."""


@dataclass(frozen=True)
class TenantDigest:
    """What the fleet overview shows of a tenant's settings."""

    tenant_id: str
    display_name: str
    oauth_enabled: bool
    provider: Provider
    administrator_address: str | None


class OverviewStore(Protocol):
    async def tenant_digests(self) -> list[TenantDigest]:
        """Every tenant, only the fields the overview shows (read without the rest)."""
        ...

    async def tenant_counts(
        self, tenant_ids: Sequence[str] | None, since: datetime
    ) -> dict[str, TenantCounts]:
        """The figures of these tenants (None: all) that have any, with one query per figure
        for every tenant at once."""
        ...


class TsiRoutingStore(Protocol):
    async def tsi_routing(self, tenant_id: str) -> tuple[TsiRoutingTable, int]:
        """The tenant's table and its revision (an empty table at revision 0 when none)."""
        ...

    async def save_tsi_routing(self, tenant_id: str, table: TsiRoutingTable, expected: int) -> bool:
        """Store the table as revision `expected + 1` if the stored one is still `expected`;
        False when another save came first."""
        ...


class GatewayStore(TenantStore, DeviceStore, ApiKeyStore, JobStore, TsiRoutingStore, OverviewStore, Protocol):
    """Everything job-gateway keeps in its own database."""


class Requester(Protocol):
    async def request(
        self, message: BaseModel, subject: str, reply: type[R], *, timeout_s: float | None = None
    ) -> R: ...


class Publisher(Protocol):
    async def publish(
        self,
        message: BaseModel,
        subject: str,
        *,
        stream: str,
        msg_id: str | None = None,
        timeout_s: float | None = None,
    ) -> bool: ...


class TenantFeed(Protocol):
    """The tenants KV bucket other services read."""

    async def put(self, settings: TenantSettings) -> None: ...
    def cached(self, tenant_id: str) -> TenantSettings | None: ...


class Attachments(Protocol):
    async def put(self, object_name: str, upload: UploadFile, limit: int) -> AttachmentRef:
        """Store the upload (at most `limit` bytes) under this name."""
        ...

    async def delete(self, object_name: str) -> None: ...

    async def exists(self, object_name: str) -> bool: ...


class DeadLetterStream(Protocol):
    async def page(self, tenant_id: str, before: int | None, limit: int) -> DeadLetterPage:
        """The tenant's dead letters below sequence `before` (None: from the newest), newest
        first, from a bounded stretch of the stream."""
        ...

    async def letter(self, tenant_id: str, sequence: int) -> DeadLetter | None:
        """The dead letter, or None when there is none or it is not this tenant's job."""
        ...

    async def resend(self, tenant_id: str, sequence: int) -> str | None:
        """Republish the dead job; its job id, or None when it is not this tenant's."""
        ...


class ConsumerLag(Protocol):
    async def views(self) -> list[QueueView]: ...
