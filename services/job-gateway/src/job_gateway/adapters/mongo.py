"""job-gateway's own collections: tenants (the source of truth), devices (and their count per
tenant), API keys, job status, TSI routing tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import Provider
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from ..credentials import HashKey
from ..domain import FINAL_STATUSES, TIMELINE_LENGTH, UNFINISHED_STATUSES, Role, StatusUpdate
from ..ports import StoredApiKey, TenantCounts, TenantDigest
from ..schemas import TsiRoutingTable

DEVICE_COUNTS = "devices"


def _appended(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """The update that adds `entry` to the job's timeline, keeping the newest entries."""
    if entry is None:
        return {}
    return {"$push": {"timeline": {"$each": [dict(entry)], "$slice": -TIMELINE_LENGTH}}}


class MongoStore:
    """`ports.GatewayStore` on MongoDB."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        db = client[database]
        self.tenants = db["tenants"]
        self.devices = db["devices"]
        self.jobs = db["jobs"]
        self.api_keys = db["api_keys"]
        self.tsi_routing_tables = db["tsi_routing"]
        self.counters = db["counters"]
        """How many devices each tenant has, in one document (`DEVICE_COUNTS`, a field per
        tenant): counted at registration, so the fleet overview reads one document, never
        the whole devices collection."""

    async def ensure_indexes(self) -> None:
        await self.migrate_devices()
        await self.devices.create_index("tenant_id")
        await self.devices.create_index([("tenant_id", 1), ("device_id", 1)], unique=True)
        await self.devices.create_index("device_id")
        await self.jobs.create_index([("tenant_id", 1), ("submitted_at", -1)])
        # The fleet overview's figures for every tenant at once: only the jobs they count are read.
        await self.jobs.create_index([("status", 1), ("tenant_id", 1)])
        await self.jobs.create_index("dead_lettered_at")
        await self.count_devices()

    async def count_devices(self) -> None:
        """Devices registered before they were counted: counted once, at the first start that
        finds no counts (afterwards each registration counts itself)."""
        if await self.counters.find_one({"_id": DEVICE_COUNTS}) is not None:
            return
        cursor = await self.devices.aggregate([{"$group": {"_id": "$tenant_id", "count": {"$sum": 1}}}])
        counted = {row["_id"]: row["count"] async for row in cursor}
        await self.counters.update_one(
            {"_id": DEVICE_COUNTS}, {"$setOnInsert": {"by_tenant": counted}}, upsert=True
        )

    async def migrate_devices(self) -> None:
        """Devices registered when device ids were global were stored under `_id` = device id,
        without a `device_id` field: give them the field (their `_id` stays), so every lookup
        is by tenant and device id. Idempotent; runs at every start."""
        async for document in self.devices.find({"device_id": {"$exists": False}}, {"_id": 1}):
            await self.devices.update_one(
                {"_id": document["_id"], "device_id": {"$exists": False}},
                {"$set": {"device_id": document["_id"]}},
            )

    # --- tenants ---

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

    # --- TSI routing ---

    async def tsi_routing(self, tenant_id: str) -> tuple[TsiRoutingTable, int]:
        document = await self.tsi_routing_tables.find_one({"_id": tenant_id})
        if document is None:
            return TsiRoutingTable(), 0
        revision = int(document.pop("revision"))
        document.pop("_id")
        return TsiRoutingTable.model_validate(document), revision

    async def save_tsi_routing(self, tenant_id: str, table: TsiRoutingTable, expected: int) -> bool:
        """One document per tenant (routes in a list: a TSI may hold dots or dollars, which
        field names may not), replaced only at the revision it was read at."""
        document = {**table.model_dump(mode="json"), "revision": expected + 1}
        if expected == 0:
            try:
                await self.tsi_routing_tables.insert_one({"_id": tenant_id, **document})
            except DuplicateKeyError:
                return False
            return True
        result = await self.tsi_routing_tables.replace_one({"_id": tenant_id, "revision": expected}, document)
        return result.matched_count == 1

    # --- devices ---

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
        """Device ids are the tenant's own: a new device is stored under `<tenant>/<device>`
        (a device id holds no `/`, so it never meets a device stored before, under its id)."""
        fields = {
            "name": name,
            "secret_hash": secret_hash,
            "disabled": False,
            "created_at": now,
            "allow_cidrs": allow_cidrs or [],
            "smtp_function": smtp_function,
            "smtp_rules": smtp_rules or [],
        }
        where = {"tenant_id": tenant_id, "device_id": device_id}
        try:
            result = await self.devices.update_one(
                where, {"$set": fields, "$setOnInsert": {"_id": f"{tenant_id}/{device_id}"}}, upsert=True
            )
        except DuplicateKeyError:  # registered at the same moment by another request: replace it
            await self.devices.update_one(where, {"$set": fields})
            return
        if result.upserted_id is not None:
            # A tenant id is letters, digits and dashes: a field name as it stands.
            await self.counters.update_one(
                {"_id": DEVICE_COUNTS}, {"$inc": {f"by_tenant.{tenant_id}": 1}}, upsert=True
            )

    async def devices_with_allowlist(self) -> list[dict[str, Any]]:
        cursor = self.devices.find({"allow_cidrs.0": {"$exists": True}}, {"secret_hash": 0})
        return [document async for document in cursor]

    async def device(self, tenant_id: str, device_id: str) -> dict[str, Any] | None:
        return await self.devices.find_one({"tenant_id": tenant_id, "device_id": device_id})

    async def devices_named(self, device_id: str) -> list[dict[str, Any]]:
        return [document async for document in self.devices.find({"device_id": device_id})]

    async def update_device(
        self, tenant_id: str, device_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if changes:
            await self.devices.update_one(
                {"tenant_id": tenant_id, "device_id": device_id}, {"$set": dict(changes)}
            )
        return await self.device(tenant_id, device_id)

    async def add_session_user(
        self, tenant_id: str, device_id: str, user: str, limit: int, signed_in: bool = False
    ) -> bool:
        field = "signed_in_users" if signed_in else "session_users"
        # Matched only while the user is listed or the list has room: one atomic write.
        room = {"$or": [{field: user}, {f"{field}.{limit - 1}": {"$exists": False}}]}
        result = await self.devices.update_one(
            {"tenant_id": tenant_id, "device_id": device_id, **room}, {"$addToSet": {field: user}}
        )
        return result.matched_count > 0

    async def remove_session_users(self, tenant_id: str, device_id: str, users: Sequence[str]) -> None:
        await self.devices.update_one(
            {"tenant_id": tenant_id, "device_id": device_id},
            {"$pullAll": {"session_users": list(users), "signed_in_users": list(users)}},
        )

    async def list_devices(self, tenant_id: str) -> list[dict[str, Any]]:
        cursor = self.devices.find({"tenant_id": tenant_id}, {"secret_hash": 0}).sort("device_id", 1)
        return [document async for document in cursor]

    # --- API keys ---

    async def save_api_key(self, key: StoredApiKey) -> None:
        await self.api_keys.insert_one(
            {
                "_id": key.key_id,
                "name": key.name,
                "role": key.role.value,
                "tenant_ids": list(key.tenant_ids) if key.tenant_ids is not None else None,
                "secret_hash": key.secret_hash,
                "hash_key": key.hash_key.value,
                "created_at": key.created_at,
            }
        )

    @staticmethod
    def _api_key(document: Mapping[str, Any]) -> StoredApiKey:
        tenants = document.get("tenant_ids")
        return StoredApiKey(
            key_id=document["_id"],
            name=document["name"],
            role=Role(document["role"]),
            tenant_ids=tuple(tenants) if tenants is not None else None,
            secret_hash=document["secret_hash"],
            # Keys stored before API keys had their own hash key have no field: the device key's.
            hash_key=HashKey(document.get("hash_key", HashKey.DEVICE.value)),
            created_at=document["created_at"],
        )

    async def api_key(self, key_id: str) -> StoredApiKey | None:
        document = await self.api_keys.find_one({"_id": key_id})
        return self._api_key(document) if document is not None else None

    async def list_api_keys(self) -> list[StoredApiKey]:
        return [self._api_key(document) async for document in self.api_keys.find({}).sort("created_at", 1)]

    async def delete_api_key(self, key_id: str) -> bool:
        return (await self.api_keys.delete_one({"_id": key_id})).deleted_count == 1

    async def rehash_api_key(self, key_id: str, old_hash: str, new_hash: str, hash_key: HashKey) -> bool:
        result = await self.api_keys.update_one(
            {"_id": key_id, "secret_hash": old_hash},
            {"$set": {"secret_hash": new_hash, "hash_key": hash_key.value}},
        )
        return result.modified_count == 1

    # --- jobs ---

    async def record_job(self, document: Mapping[str, Any]) -> bool:
        try:
            await self.jobs.insert_one(dict(document))
        except DuplicateKeyError:
            return False
        return True

    async def forget_job(self, job_id: str) -> None:
        await self.jobs.delete_one({"_id": job_id})

    async def mark_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        await self.jobs.update_one({"_id": job_id}, {"$set": dict(fields)})

    async def job(self, job_id: str) -> dict[str, Any] | None:
        return await self.jobs.find_one({"_id": job_id})

    async def requeue_job(self, job_id: str, at: datetime) -> None:
        """A dead job sent again: its status starts over."""
        await self.jobs.update_one(
            {"_id": job_id},
            {
                "$set": {"status": "queued", "updated_at": at},
                "$unset": {"detail": "", "remedy": "", "reason_code": "", "smtp_reply": ""},
            }
            | _appended({"kind": "resent", "at": at}),
        )

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
        """A tenant's jobs, newest first; `before` pages back through them, back to `since`."""
        query: dict[str, Any] = {"tenant_id": tenant_id}
        for key, value in (("status", status), ("device_id", device_id), ("function", function)):
            if value is not None:
                query[key] = value
        submitted: dict[str, datetime] = {}
        if before is not None:
            submitted["$lt"] = before
        if since is not None:
            submitted["$gte"] = since
        if submitted:
            query["submitted_at"] = submitted
        cursor = self.jobs.find(query).sort("submitted_at", -1).limit(limit)
        return [document async for document in cursor]

    async def job_counts(self, tenant_id: str, since: datetime) -> dict[str, int]:
        """How many of the tenant's jobs submitted since `since` are in each status."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"tenant_id": tenant_id, "submitted_at": {"$gte": since}}},
            {"$group": {"_id": "$status", "count": {"$sum": 1}}},
        ]
        cursor = await self.jobs.aggregate(pipeline)
        return {str(row["_id"]): int(row["count"]) async for row in cursor}

    # --- the fleet overview ---

    async def tenant_digests(self) -> list[TenantDigest]:
        fields = {"_id": 0, "tenant_id": 1, "display_name": 1, "oauth_enabled": 1, "provider": 1}
        cursor = self.tenants.find({}, {**fields, "administrator_address": 1})
        return [
            TenantDigest(
                tenant_id=d["tenant_id"],
                display_name=d.get("display_name") or "",
                oauth_enabled=bool(d.get("oauth_enabled")),
                provider=Provider(d.get("provider") or Provider.MICROSOFT.value),
                administrator_address=d.get("administrator_address"),
            )
            async for d in cursor
        ]

    async def tenant_counts(
        self, tenant_ids: Sequence[str] | None, since: datetime
    ) -> dict[str, TenantCounts]:
        tenants: dict[str, Any] = {} if tenant_ids is None else {"tenant_id": {"$in": list(tenant_ids)}}
        counted = await self.counters.find_one({"_id": DEVICE_COUNTS}) or {}
        wanted = set(tenant_ids) if tenant_ids is not None else None
        found: dict[str, dict[str, int]] = {
            tenant_id: {"devices": int(count)}
            for tenant_id, count in (counted.get("by_tenant") or {}).items()
            if wanted is None or tenant_id in wanted
        }
        dead = await self.jobs.aggregate(
            [
                {"$match": {"dead_lettered_at": {"$gte": since}, **tenants}},
                {
                    "$group": {
                        "_id": "$tenant_id",
                        "dead_lettered": {"$sum": 1},
                        "failed": {"$sum": {"$cond": [{"$eq": ["$status", "failed"]}, 1, 0]}},
                    }
                },
            ]
        )
        async for row in dead:
            found.setdefault(row["_id"], {}).update(dead_lettered=row["dead_lettered"], failed=row["failed"])
        unfinished = await self.jobs.aggregate(
            [
                {"$match": {"status": {"$in": sorted(UNFINISHED_STATUSES)}, **tenants}},
                {"$group": {"_id": {"tenant_id": "$tenant_id", "status": "$status"}, "count": {"$sum": 1}}},
            ]
        )
        waiting: dict[str, dict[str, int]] = {}
        async for row in unfinished:
            waiting.setdefault(row["_id"]["tenant_id"], {})[row["_id"]["status"]] = row["count"]
        return {
            tenant_id: TenantCounts(**found.get(tenant_id, {}), unfinished=waiting.get(tenant_id, {}))
            for tenant_id in found.keys() | waiting.keys()
        }

    async def update_job_statuses(self, updates: Sequence[StatusUpdate]) -> None:
        """In order, in one round trip; the filter is the forward-only rule (`domain.may_change`)."""
        if not updates:
            return
        await self.jobs.bulk_write(
            [
                UpdateOne(
                    {"_id": update.job_id, "status": {"$nin": sorted(FINAL_STATUSES)}},
                    {"$set": {"status": update.status, "updated_at": update.at, **update.fields}}
                    | _appended(update.entry),
                )
                for update in updates
            ],
            ordered=True,
        )
