"""The outbox in MongoDB (`webhook_deliveries`): one document per delivery, its id made of
the alert, the transition and the endpoint, so putting it twice changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from ..domain.notices import Delivery, Postponed


def _document(delivery: Delivery) -> dict[str, Any]:
    return {
        "_id": delivery.delivery_id,
        "tenant_id": delivery.tenant_id,
        "url": delivery.url,
        "event": delivery.event,
        "body": delivery.body,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
        "last_error": delivery.last_error,
    }


def _delivery(document: dict[str, Any]) -> Delivery:
    return Delivery(
        delivery_id=document["_id"],
        tenant_id=document["tenant_id"],
        url=document["url"],
        event=document["event"],
        body=document["body"],
        created_at=document["created_at"],
        next_attempt_at=document["next_attempt_at"],
        state=document["state"],
        attempts=document["attempts"],
        last_error=document.get("last_error"),
    )


class MongoOutbox:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._outbox = client[database]["webhook_deliveries"]

    async def put(self, delivery: Delivery) -> bool:
        try:
            await self._outbox.insert_one(_document(delivery))
        except DuplicateKeyError:
            return False  # already in the outbox: the event was seen before
        return True

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        cursor = self._outbox.find({"state": "pending", "next_attempt_at": {"$lte": now}}).limit(limit)
        return [_delivery(document) async for document in cursor]

    async def delivered(self, delivery_id: str, now: datetime) -> None:
        await self._outbox.update_one(
            {"_id": delivery_id},
            {"$set": {"state": "delivered", "delivered_at": now, "last_error": None}},
        )

    async def postponed(self, delivery_id: str, postponed: Postponed) -> None:
        await self._outbox.update_one(
            {"_id": delivery_id},
            {
                "$set": {
                    "state": postponed.state,
                    "attempts": postponed.attempts,
                    "last_error": postponed.last_error,
                    "next_attempt_at": postponed.next_attempt_at,
                }
            },
        )

    async def failing(self, tenant_id: str) -> list[Delivery]:
        cursor = self._outbox.find(
            {"tenant_id": tenant_id, "state": {"$in": ["pending", "failed"]}, "attempts": {"$gt": 0}}
        )
        return [_delivery(document) async for document in cursor]
