"""Grants in MongoDB, tokens sealed with AES-256-GCM (the grant's identity as associated data).

One document per grant. Besides the sealed refresh token it holds the latest access token,
sealed too, so every replica can use a token another replica refreshed; a lease (owner and
expiry) so only one replica refreshes at a time; and a version for compare-and-set writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AdministratorGrantSummary,
    GrantStatus,
    GrantSummaryReply,
    Principal,
    PrincipalKind,
    Provider,
    TokenResource,
    UsersWaiting,
)
from fleetmail_runtime.crypto import Sealed, Sealer
from pymongo import AsyncMongoClient

from ..domain import associated_data, grant_id, last_active
from ..model import IssuedToken, StoredGrant
from .mongo import store_errors

NEEDS_SIGN_IN = [s.value for s in GrantStatus if s is not GrantStatus.ACTIVE]
"""A grant in any of these needs its principal to sign in again (listed: an index serves `$in`)."""


class MongoGrantStore:
    """The `GrantStore` port on MongoDB."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, keyring: Sealer) -> None:
        self._grants = client[database]["grants"]
        self._keyring = keyring

    @store_errors("create the grants' indexes")
    async def ensure_indexes(self) -> None:
        await self._grants.create_index([("tenant_id", 1), ("kind", 1)])
        # The fleet overview reads every tenant's administrator grants and the user grants
        # that need a sign-in: by kind and status, never the whole collection.
        await self._grants.create_index([("kind", 1), ("status", 1)])

    def _seal(
        self, principal: Principal, provider: Provider, value: str, purpose: bytes
    ) -> dict[str, object]:
        return self._keyring.seal(
            value.encode(), associated_data(principal, provider) + purpose
        ).to_document()

    def _open(self, principal: Principal, provider: Provider, document: Any, purpose: bytes) -> str:
        return self._keyring.open(
            Sealed.from_document(document), associated_data(principal, provider) + purpose
        ).decode()

    def _load(self, document: dict[str, Any]) -> StoredGrant:
        principal = Principal(
            tenant_id=document["tenant_id"],
            kind=PrincipalKind(document["kind"]),
            address=document["address"],
        )
        provider = Provider(document["provider"])
        access = document.get("access_token")
        lease = document.get("lease") or {}
        return StoredGrant(
            principal=principal,
            provider=provider,
            status=GrantStatus(document["status"]),
            scopes=tuple(document.get("scopes", ())),
            refresh_token=(
                self._open(principal, provider, document["refresh_token"], b"|refresh")
                if document.get("refresh_token")
                else None
            ),
            version=int(document["version"]),
            flow=AcquisitionFlow(document.get("flow", "device_code")),
            authority=document.get("authority"),
            client_id=document.get("client_id"),
            acquired_at=document["acquired_at"],
            last_refreshed_at=document.get("last_refreshed_at"),
            last_used_at=document.get("last_used_at"),
            predicted_death_at=document.get("predicted_death_at"),
            access_token=self._open(principal, provider, access, b"|access") if access else None,
            access_issued_at=document.get("access_issued_at"),
            access_expires_at=document.get("access_expires_at"),
            access_resource=TokenResource(document.get("access_resource", TokenResource.SMTP.value)),
            lease_owner=lease.get("owner"),
            lease_expires_at=lease.get("expires_at"),
            expiring_announced_at=document.get("expiring_announced_at"),
            status_detail=document.get("status_detail"),
        )

    @store_errors("read a grant")
    async def get(self, principal: Principal) -> StoredGrant | None:
        document = await self._grants.find_one({"_id": grant_id(principal)})
        return self._load(document) if document else None

    @store_errors("store a grant")
    async def replace(
        self,
        principal: Principal,
        provider: Provider,
        issued: IssuedToken,
        scopes: tuple[str, ...],
        flow: AcquisitionFlow,
        authority: str | None,
        client_id: str | None,
        predicted_death_at: datetime | None,
    ) -> None:
        """Store a freshly acquired grant, replacing any earlier one for the principal at once.
        An app-only grant has no refresh token."""
        refresh = (
            self._seal(principal, provider, issued.refresh_token, b"|refresh")
            if issued.refresh_token is not None
            else None
        )
        await self._grants.update_one(
            {"_id": grant_id(principal)},
            {
                "$set": {
                    "tenant_id": principal.tenant_id,
                    "kind": principal.kind.value,
                    "address": principal.address,
                    "provider": provider.value,
                    "status": GrantStatus.ACTIVE.value,
                    "scopes": list(scopes),
                    "refresh_token": refresh,
                    "access_token": self._seal(principal, provider, issued.access_token, b"|access"),
                    "access_issued_at": issued.issued_at,
                    "access_expires_at": issued.expires_at,
                    "access_resource": issued.resource.value,
                    "flow": flow.value,
                    "authority": authority,
                    "client_id": client_id,
                    "acquired_at": issued.issued_at,
                    "last_refreshed_at": issued.issued_at,
                    "last_used_at": None,
                    "predicted_death_at": predicted_death_at,
                    "status_detail": None,
                    "lease": None,
                },
                "$inc": {"version": 1},
            },
            upsert=True,
        )

    @store_errors("take a refresh lease")
    async def take_lease(self, principal: Principal, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take the refresh lease if nobody holds a live one."""
        result = await self._grants.update_one(
            {
                "_id": grant_id(principal),
                "$or": [{"lease": None}, {"lease.expires_at": {"$lt": now}}],
            },
            {"$set": {"lease": {"owner": owner, "expires_at": now + ttl}}},
        )
        return result.modified_count == 1

    @store_errors("release a refresh lease")
    async def release_lease(self, principal: Principal, owner: str) -> None:
        """Only the owner may release a lease."""
        await self._grants.update_one(
            {"_id": grant_id(principal), "lease.owner": owner}, {"$set": {"lease": None}}
        )

    @store_errors("store a refresh")
    async def record_refresh(
        self,
        grant: StoredGrant,
        issued: IssuedToken,
        predicted_death_at: datetime | None,
        owner: str,
    ) -> bool:
        """Compare-and-set on the version, and release the lease: False if another writer won."""
        update: dict[str, Any] = {
            "status": GrantStatus.ACTIVE.value,
            "access_token": self._seal(grant.principal, grant.provider, issued.access_token, b"|access"),
            "access_issued_at": issued.issued_at,
            "access_expires_at": issued.expires_at,
            "access_resource": issued.resource.value,
            "last_refreshed_at": issued.issued_at,
            "predicted_death_at": predicted_death_at,
            "status_detail": None,
            "lease": None,
        }
        if issued.refresh_token is not None:
            update["refresh_token"] = self._seal(
                grant.principal, grant.provider, issued.refresh_token, b"|refresh"
            )
        result = await self._grants.update_one(
            {"_id": grant_id(grant.principal), "version": grant.version},
            {"$set": update, "$inc": {"version": 1}},
        )
        return result.modified_count == 1

    @store_errors("change a grant's status")
    async def set_status(
        self,
        principal: Principal,
        status: GrantStatus,
        owner: str | None = None,
        *,
        detail: str | None = None,
        version: int | None = None,
    ) -> bool:
        update: dict[str, Any] = {"status": status.value, "status_detail": detail}
        if status is not GrantStatus.ACTIVE:
            update["access_token"] = None
        if owner is not None:
            update["lease"] = None
        query: dict[str, Any] = {"_id": grant_id(principal)}
        if version is not None:
            query["version"] = version
        result = await self._grants.update_one(query, {"$set": update})
        return result.modified_count == 1

    @store_errors("record a grant's use")
    async def record_use(self, principal: Principal, now: datetime) -> None:
        await self._grants.update_one({"_id": grant_id(principal)}, {"$max": {"last_used_at": now}})

    @store_errors("delete an idle grant")
    async def delete_idle(self, principal: Principal, active_before: datetime) -> bool:
        result = await self._grants.delete_one(
            {
                "_id": grant_id(principal),
                "acquired_at": {"$lte": active_before},
                "$or": [{"last_used_at": None}, {"last_used_at": {"$lte": active_before}}],
            }
        )
        return result.deleted_count == 1

    @store_errors("list the user grants' activity")
    async def user_activity(self) -> list[tuple[Principal, datetime]]:
        """The lapse sweep's work list (small fields only, no secrets read)."""
        cursor = self._grants.find(
            {"kind": PrincipalKind.USER.value},
            {"tenant_id": 1, "address": 1, "acquired_at": 1, "last_used_at": 1},
        )
        return [
            (
                Principal(tenant_id=d["tenant_id"], kind=PrincipalKind.USER, address=d["address"]),
                last_active(d["acquired_at"], d.get("last_used_at")),
            )
            async for d in cursor
        ]

    @store_errors("stamp a grant's authority")
    async def stamp_issuer(self, principal: Principal, authority: str, client_id: str) -> bool:
        key = grant_id(principal)
        for held, update in (
            (None, {"authority": authority, "client_id": client_id}),
            (client_id, {"authority": authority}),
        ):
            # `None` matches a field that is null or absent (grants of the first release).
            result = await self._grants.update_one(
                {"_id": key, "authority": None, "client_id": held}, {"$set": update}
            )
            if result.modified_count == 1:
                return True
        return False

    @store_errors("delete a grant")
    async def delete(self, principal: Principal) -> bool:
        result = await self._grants.delete_one({"_id": grant_id(principal)})
        return result.deleted_count == 1

    @store_errors("list the active grants")
    async def active_principals(self) -> list[Principal]:
        """Every active grant's principal (the keep-alive sweep's work list; no secrets read)."""
        cursor = self._grants.find(
            {"status": GrantStatus.ACTIVE.value}, {"tenant_id": 1, "kind": 1, "address": 1}
        )
        return [
            Principal(tenant_id=d["tenant_id"], kind=PrincipalKind(d["kind"]), address=d["address"])
            async for d in cursor
        ]

    @store_errors("summarise the grants")
    async def summary(self) -> list[dict[str, Any]]:
        """Every grant's tenant, provider, status and predicted death, for the gauges
        (no secrets read; a projection of small fields only)."""
        cursor = self._grants.find(
            {}, {"_id": 0, "tenant_id": 1, "provider": 1, "status": 1, "predicted_death_at": 1}
        )
        return [d async for d in cursor]

    @store_errors("record an expiry announcement")
    async def announce_expiring(self, principal: Principal, now: datetime, announce: bool) -> bool:
        """Record that the coming death was announced (True once), or clear it when it passed."""
        if not announce:
            await self._grants.update_one(
                {"_id": grant_id(principal), "expiring_announced_at": {"$ne": None}},
                {"$set": {"expiring_announced_at": None}},
            )
            return False
        result = await self._grants.update_one(
            {"_id": grant_id(principal), "expiring_announced_at": None},
            {"$set": {"expiring_announced_at": now}},
        )
        return result.modified_count == 1

    @store_errors("re-encrypt the grants")
    async def reseal_all(self, on_progress: Callable[[int, int], None]) -> int:
        """Re-encrypt every token not under the current key; safe while replicas serve.

        A record is rewritten only if its version is unchanged (a refresh in between wins and
        seals under whichever key it had), and the version is not bumped, so a refresh that
        read the record before is not turned away. Returns how many were rewritten.
        """
        current = self._keyring.current
        stale = {
            "$or": [
                {"refresh_token.key_id": {"$nin": [current, None]}},
                {"access_token.key_id": {"$nin": [current, None]}},
            ]
        }
        total = await self._grants.count_documents(stale)
        done = 0
        async for document in self._grants.find(stale):
            grant = self._load(document)
            update: dict[str, Any] = {}
            if grant.refresh_token is not None:
                update["refresh_token"] = self._seal(
                    grant.principal, grant.provider, grant.refresh_token, b"|refresh"
                )
            if grant.access_token is not None:
                update["access_token"] = self._seal(
                    grant.principal, grant.provider, grant.access_token, b"|access"
                )
            result = await self._grants.update_one(
                {"_id": document["_id"], "version": grant.version}, {"$set": update}
            )
            done += result.modified_count
            on_progress(done, total)
        return done

    @store_errors("list a tenant's grants")
    async def list_tenant(self, tenant_id: str) -> list[StoredGrant]:
        return [self._load(d) async for d in self._grants.find({"tenant_id": tenant_id})]

    @store_errors("summarise the fleet's grants")
    async def fleet_summary(self, tenant_ids: Sequence[str] | None) -> GrantSummaryReply:
        tenants: dict[str, Any] = {} if tenant_ids is None else {"tenant_id": {"$in": list(tenant_ids)}}
        administrators = self._grants.find(
            {"kind": PrincipalKind.ADMINISTRATOR.value, **tenants},
            {"_id": 0, "tenant_id": 1, "address": 1, "status": 1, "predicted_death_at": 1},
        )
        waiting = await self._grants.aggregate(
            [
                {"$match": {"kind": PrincipalKind.USER.value, "status": {"$in": NEEDS_SIGN_IN}, **tenants}},
                {"$group": {"_id": "$tenant_id", "count": {"$sum": 1}}},
            ]
        )
        return GrantSummaryReply(
            administrators=tuple(
                [
                    AdministratorGrantSummary(
                        tenant_id=d["tenant_id"],
                        address=d["address"],
                        status=GrantStatus(d["status"]),
                        predicted_death_at=d.get("predicted_death_at"),
                    )
                    async for d in administrators
                ]
            ),
            users_waiting=tuple([UsersWaiting(tenant_id=d["_id"], count=d["count"]) async for d in waiting]),
        )
