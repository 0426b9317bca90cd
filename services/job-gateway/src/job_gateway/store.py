"""job-gateway's own collections: tenants (the source of truth), devices, job status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleetmail_contracts.tenants import TenantSettings
from pymongo import AsyncMongoClient, UpdateOne


class GatewayStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        db = client[database]
        self.tenants = db["tenants"]
        self.devices = db["devices"]
        self.jobs = db["jobs"]

    async def ensure_indexes(self) -> None:
        await self.devices.create_index("tenant_id")
        await self.jobs.create_index([("tenant_id", 1), ("submitted_at", -1)])

    async def save_tenant(self, settings: TenantSettings) -> None:
        await self.tenants.replace_one(
            {"_id": settings.tenant_id},
            {"_id": settings.tenant_id, **settings.model_dump(mode="json")},
            upsert=True,
        )

    async def tenant(self, tenant_id: str) -> TenantSettings | None:
        document = await self.tenants.find_one({"_id": tenant_id})
        if document is None:
            return None
        document.pop("_id")
        return TenantSettings.model_validate(document)

    async def all_tenants(self) -> list[TenantSettings]:
        found = []
        async for document in self.tenants.find({}):
            document.pop("_id")
            found.append(TenantSettings.model_validate(document))
        return found

    async def save_device(
        self,
        tenant_id: str,
        device_id: str,
        name: str,
        secret_hash: str,
        now: datetime,
        allow_cidrs: list[str] | None = None,
        smtp_function: str | None = None,
    ) -> None:
        await self.devices.replace_one(
            {"_id": device_id},
            {
                "_id": device_id,
                "tenant_id": tenant_id,
                "name": name,
                "secret_hash": secret_hash,
                "disabled": False,
                "created_at": now,
                "allow_cidrs": allow_cidrs or [],
                "smtp_function": smtp_function,
            },
            upsert=True,
        )

    async def devices_with_allowlist(self) -> list[dict[str, Any]]:
        """Devices that may send over SMTP without AUTH, from the addresses they registered."""
        cursor = self.devices.find({"allow_cidrs.0": {"$exists": True}}, {"secret_hash": 0})
        return [document async for document in cursor]

    async def device(self, device_id: str) -> dict[str, Any] | None:
        return await self.devices.find_one({"_id": device_id})

    async def record_job(self, document: dict[str, Any]) -> None:
        await self.jobs.insert_one(document)

    async def forget_job(self, job_id: str) -> None:
        await self.jobs.delete_one({"_id": job_id})

    async def job(self, job_id: str) -> dict[str, Any] | None:
        return await self.jobs.find_one({"_id": job_id})

    async def update_job_statuses(self, updates: list[tuple[str, str, datetime, dict[str, Any]]]) -> None:
        """Apply status changes in order, in one round trip. Status only moves forward:
        a late 'deferred' or 'accepted' never overwrites 'sent' or 'failed'."""
        if not updates:
            return
        final = ["sent", "failed"]
        await self.jobs.bulk_write(
            [
                UpdateOne(
                    {"_id": job_id, "status": {"$nin": final}},
                    {"$set": {"status": status, "updated_at": at, **fields}},
                )
                for job_id, status, at, fields in updates
            ],
            ordered=True,
        )
