"""Grants in MongoDB, refresh tokens sealed with AES-256-GCM (the identity as associated data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    GrantStatus,
    GrantView,
    Principal,
    PrincipalKind,
    Provider,
)
from fleetmail_runtime.crypto import Keyring, Sealed
from pymongo import AsyncMongoClient, ReturnDocument

from ..domain import associated_data, grant_id


@dataclass(frozen=True)
class StoredGrant:
    principal: Principal
    provider: Provider
    status: GrantStatus
    scopes: tuple[str, ...]
    refresh_token: str
    version: int
    flow: AcquisitionFlow
    authority: str | None
    client_id: str | None
    acquired_at: datetime
    last_refreshed_at: datetime | None
    last_used_at: datetime | None
    predicted_death_at: datetime | None

    def view(self) -> GrantView:
        return GrantView(
            principal=self.principal,
            provider=self.provider,
            status=self.status,
            scopes=self.scopes,
            acquired_at=self.acquired_at,
            last_refreshed_at=self.last_refreshed_at,
            last_used_at=self.last_used_at,
            predicted_death_at=self.predicted_death_at,
        )

    def __repr__(self) -> str:
        return f"StoredGrant({grant_id(self.principal)}, {self.status}, v{self.version})"


class GrantStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, keyring: Keyring) -> None:
        self._grants = client[database]["grants"]
        self._keyring = keyring

    async def ensure_indexes(self) -> None:
        await self._grants.create_index([("tenant_id", 1), ("kind", 1)])

    def _seal(self, principal: Principal, provider: Provider, refresh_token: str) -> dict[str, object]:
        return self._keyring.seal(refresh_token.encode(), associated_data(principal, provider)).to_document()

    def _load(self, document: dict[str, Any]) -> StoredGrant:
        principal = Principal(
            tenant_id=document["tenant_id"],
            kind=PrincipalKind(document["kind"]),
            address=document["address"],
        )
        provider = Provider(document["provider"])
        refresh_token = self._keyring.open(
            Sealed.from_document(document["refresh_token"]), associated_data(principal, provider)
        ).decode()
        return StoredGrant(
            principal=principal,
            provider=provider,
            status=GrantStatus(document["status"]),
            scopes=tuple(document.get("scopes", ())),
            refresh_token=refresh_token,
            version=int(document["version"]),
            flow=AcquisitionFlow(document.get("flow", "device_code")),
            authority=document.get("authority"),
            client_id=document.get("client_id"),
            acquired_at=document["acquired_at"],
            last_refreshed_at=document.get("last_refreshed_at"),
            last_used_at=document.get("last_used_at"),
            predicted_death_at=document.get("predicted_death_at"),
        )

    async def get(self, principal: Principal) -> StoredGrant | None:
        document = await self._grants.find_one({"_id": grant_id(principal)})
        return self._load(document) if document else None

    async def replace(
        self,
        principal: Principal,
        provider: Provider,
        refresh_token: str,
        scopes: tuple[str, ...],
        flow: AcquisitionFlow,
        authority: str | None,
        client_id: str | None,
        now: datetime,
        predicted_death_at: datetime,
    ) -> None:
        """Store a freshly acquired grant, replacing any earlier one for the principal at once."""
        await self._grants.find_one_and_update(
            {"_id": grant_id(principal)},
            {
                "$set": {
                    "tenant_id": principal.tenant_id,
                    "kind": principal.kind.value,
                    "address": principal.address,
                    "provider": provider.value,
                    "status": GrantStatus.ACTIVE.value,
                    "scopes": list(scopes),
                    "refresh_token": self._seal(principal, provider, refresh_token),
                    "flow": flow.value,
                    "authority": authority,
                    "client_id": client_id,
                    "acquired_at": now,
                    "last_refreshed_at": now,
                    "last_used_at": None,
                    "predicted_death_at": predicted_death_at,
                },
                "$inc": {"version": 1},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )

    async def record_refresh(
        self,
        grant: StoredGrant,
        new_refresh_token: str | None,
        now: datetime,
        predicted_death_at: datetime,
    ) -> bool:
        """Compare-and-set on the version: False if another writer got there first."""
        update: dict[str, Any] = {
            "status": GrantStatus.ACTIVE.value,
            "last_refreshed_at": now,
            "last_used_at": now,
            "predicted_death_at": predicted_death_at,
        }
        if new_refresh_token is not None:
            update["refresh_token"] = self._seal(grant.principal, grant.provider, new_refresh_token)
        result = await self._grants.update_one(
            {"_id": grant_id(grant.principal), "version": grant.version},
            {"$set": update, "$inc": {"version": 1}},
        )
        return result.modified_count == 1

    async def set_status(self, principal: Principal, status: GrantStatus) -> None:
        await self._grants.update_one({"_id": grant_id(principal)}, {"$set": {"status": status.value}})

    async def delete(self, principal: Principal) -> bool:
        result = await self._grants.delete_one({"_id": grant_id(principal)})
        return result.deleted_count == 1

    async def list_tenant(self, tenant_id: str) -> list[StoredGrant]:
        return [self._load(d) async for d in self._grants.find({"tenant_id": tenant_id})]
