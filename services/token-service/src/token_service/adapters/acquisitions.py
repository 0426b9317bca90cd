"""Acquisitions in MongoDB, so any replica can answer "how is that sign-in going?".

Every flow is kept here sealed (it holds the device code or the PKCE verifier).
An authorization-code flow is found by its `state` when the redirect comes back, and used
once. A device-code flow has a poller: the replica polling it, with a lease it renews every
interval; when that replica dies, the lease runs out and another replica takes the flow
over, so a sign-in the user already started still completes. A TTL index removes old records.
"""

from __future__ import annotations

import json
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

from ..model import ClaimedFlow
from .mongo import store_errors

KEEP_AFTER_EXPIRY_S = 24 * 3600


class MongoAcquisitionStore:
    """The `AcquisitionStore` port on MongoDB."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, keyring: Sealer) -> None:
        self._acquisitions = client[database]["acquisitions"]
        self._keyring = keyring

    @store_errors("create the acquisitions' indexes")
    async def ensure_indexes(self) -> None:
        await self._acquisitions.create_index("expires_at", expireAfterSeconds=KEEP_AFTER_EXPIRY_S)
        await self._acquisitions.create_index("oauth_state", sparse=True)

    @store_errors("record a sign-in")
    async def create(
        self,
        acquisition_id: str,
        principal: Principal,
        provider: Provider,
        flow_kind: AcquisitionFlow,
        expires_at: datetime,
        oauth_state: str | None = None,
        flow: dict[str, Any] | None = None,
        poller: tuple[str, datetime] | None = None,
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
        if flow is not None:
            document["flow"] = self._keyring.seal(
                json.dumps(flow).encode(), f"acquisition|{acquisition_id}".encode()
            ).to_document()
        if oauth_state is not None:
            document["oauth_state"] = oauth_state
            document["used"] = False
        if poller is not None:
            document["poller"] = {"owner": poller[0], "expires_at": poller[1]}
        await self._acquisitions.insert_one(document)

    def _claimed(self, document: dict[str, Any]) -> ClaimedFlow:
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

    @store_errors("renew a device-code poller")
    async def renew_poller(self, acquisition_id: str, owner: str, expires_at: datetime) -> bool:
        """Keep polling a device-code flow: False when another replica has taken it over."""
        result = await self._acquisitions.update_one(
            {"_id": acquisition_id, "poller.owner": owner}, {"$set": {"poller.expires_at": expires_at}}
        )
        return result.matched_count == 1

    @store_errors("release a device-code poller")
    async def release_poller(self, acquisition_id: str, owner: str, now: datetime) -> None:
        """This replica stops (shutting down): another may take the flow over at once."""
        await self._acquisitions.update_one(
            {"_id": acquisition_id, "poller.owner": owner}, {"$set": {"poller.expires_at": now}}
        )

    @store_errors("look for orphaned device-code sign-ins")
    async def orphaned_device_flows(self, now: datetime) -> list[str]:
        """Pending device-code flows whose poller stopped renewing (its replica died)."""
        cursor = self._acquisitions.find(
            {
                "state": AcquisitionState.PENDING.value,
                "flow_kind": AcquisitionFlow.DEVICE_CODE.value,
                "expires_at": {"$gt": now},
                "poller.expires_at": {"$lt": now},
            },
            {"_id": 1},
        )
        return [d["_id"] async for d in cursor]

    @store_errors("take a device-code sign-in over")
    async def take_over(
        self, acquisition_id: str, owner: str, now: datetime, expires_at: datetime
    ) -> ClaimedFlow | None:
        """Become the poller of an orphaned device-code flow; None if another replica won."""
        document = await self._acquisitions.find_one_and_update(
            {
                "_id": acquisition_id,
                "state": AcquisitionState.PENDING.value,
                "poller.expires_at": {"$lt": now},
            },
            {"$set": {"poller": {"owner": owner, "expires_at": expires_at}}},
            return_document=ReturnDocument.AFTER,
        )
        return self._claimed(document) if document is not None else None

    @store_errors("claim a sign-in answer")
    async def claim(self, oauth_state: str, now: datetime) -> ClaimedFlow | None:
        """The flow a redirect belongs to, once: a second use, or a late one, finds nothing."""
        document = await self._acquisitions.find_one_and_update(
            {"oauth_state": oauth_state, "used": False, "expires_at": {"$gt": now}},
            {"$set": {"used": True}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            return None
        return self._claimed(document)

    @store_errors("record how a sign-in ended")
    async def finish(self, acquisition_id: str, state: AcquisitionState, detail: str | None) -> None:
        await self._acquisitions.update_one(
            {"_id": acquisition_id}, {"$set": {"state": state.value, "detail": detail}}
        )

    @store_errors("read a sign-in's state")
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
