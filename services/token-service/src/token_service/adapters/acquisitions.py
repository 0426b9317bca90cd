"""Acquisitions in MongoDB, so any replica can answer "how is that sign-in going?".

A device-code flow (it holds the device code) stays in the memory of the replica polling
it. An authorization-code flow is kept here, sealed (it holds the PKCE verifier), found by
its `state` when the redirect comes back, and used once. A TTL index removes old records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetmail_contracts.tokens import (
    AcquisitionFlow,
    AcquisitionState,
    AcquisitionStatus,
    Principal,
    Provider,
)
from fleetmail_runtime.crypto import Sealed, Sealer
from pymongo import AsyncMongoClient, ReturnDocument

KEEP_AFTER_EXPIRY_S = 24 * 3600


@dataclass(frozen=True)
class ClaimedFlow:
    acquisition_id: str
    principal: Principal
    provider: Provider
    flow: dict[str, Any]

    def __repr__(self) -> str:
        return f"ClaimedFlow({self.acquisition_id})"


class AcquisitionStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, keyring: Sealer) -> None:
        self._acquisitions = client[database]["acquisitions"]
        self._keyring = keyring

    async def ensure_indexes(self) -> None:
        await self._acquisitions.create_index("expires_at", expireAfterSeconds=KEEP_AFTER_EXPIRY_S)
        await self._acquisitions.create_index("oauth_state", sparse=True)

    async def create(
        self,
        acquisition_id: str,
        principal: Principal,
        provider: Provider,
        flow_kind: AcquisitionFlow,
        expires_at: datetime,
        oauth_state: str | None = None,
        flow: dict[str, Any] | None = None,
    ) -> None:
        document: dict[str, Any] = {
            "_id": acquisition_id,
            "principal": principal.model_dump(mode="json"),
            "provider": provider.value,
            "flow_kind": flow_kind.value,
            "state": AcquisitionState.PENDING.value,
            "detail": None,
            "expires_at": expires_at,
        }
        if oauth_state is not None and flow is not None:
            document["oauth_state"] = oauth_state
            document["used"] = False
            document["flow"] = self._keyring.seal(
                json.dumps(flow).encode(), f"acquisition|{acquisition_id}".encode()
            ).to_document()
        await self._acquisitions.insert_one(document)

    async def claim(self, oauth_state: str, now: datetime) -> ClaimedFlow | None:
        """The flow a redirect belongs to, once: a second use, or a late one, finds nothing."""
        document = await self._acquisitions.find_one_and_update(
            {"oauth_state": oauth_state, "used": False, "expires_at": {"$gt": now}},
            {"$set": {"used": True}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            return None
        flow = json.loads(
            self._keyring.open(
                Sealed.from_document(document["flow"]), f"acquisition|{document['_id']}".encode()
            )
        )
        return ClaimedFlow(
            document["_id"],
            Principal.model_validate(document["principal"]),
            Provider(document["provider"]),
            flow,
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
