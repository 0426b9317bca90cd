"""Acquisitions in MongoDB, so any replica can answer "how is that sign-in going?".

The flow itself (it holds the device code) stays in the memory of the replica polling it;
what is stored is its state, principal and expiry. A TTL index removes old records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleetmail_contracts.tokens import AcquisitionState, AcquisitionStatus, Principal
from pymongo import AsyncMongoClient

KEEP_AFTER_EXPIRY_S = 24 * 3600


class AcquisitionStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._acquisitions = client[database]["acquisitions"]

    async def ensure_indexes(self) -> None:
        await self._acquisitions.create_index("expires_at", expireAfterSeconds=KEEP_AFTER_EXPIRY_S)

    async def create(self, acquisition_id: str, principal: Principal, expires_at: datetime) -> None:
        await self._acquisitions.insert_one(
            {
                "_id": acquisition_id,
                "principal": principal.model_dump(mode="json"),
                "state": AcquisitionState.PENDING.value,
                "detail": None,
                "expires_at": expires_at,
            }
        )

    async def finish(self, acquisition_id: str, state: AcquisitionState, detail: str | None) -> None:
        await self._acquisitions.update_one(
            {"_id": acquisition_id}, {"$set": {"state": state.value, "detail": detail}}
        )

    async def status(self, acquisition_id: str, tenant_id: str, now: datetime) -> AcquisitionStatus:
        document = await self._acquisitions.find_one({"_id": acquisition_id})
        if document is None or document["principal"]["tenant_id"] != tenant_id:
            return AcquisitionStatus(
                acquisition_id=acquisition_id,
                state=AcquisitionState.FAILED,
                detail="unknown acquisition: start a new one",
            )
        state = AcquisitionState(document["state"])
        detail = document.get("detail")
        if state is AcquisitionState.PENDING and document["expires_at"] < now:
            state, detail = AcquisitionState.EXPIRED, "the code expired before sign-in finished; start again"
        return AcquisitionStatus(
            acquisition_id=acquisition_id,
            state=state,
            principal=Principal.model_validate(document["principal"]),
            detail=detail,
        )
