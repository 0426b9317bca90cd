"""Alerts in MongoDB: one document per dedupe key, open → acknowledged → resolved.

Raising is idempotent: an event processed twice (a redelivery after a restart) finds the
alert already open and changes nothing. A resolved alert raised again reopens with a new
alert id. Open keys are also kept in memory, so the flood of events that change nothing
(a thousand failures of one dead grant, every sent message that could resolve an SMTP
alert) costs no database write; the set is reloaded periodically, for replicas that
missed each other's changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fleetmail_contracts.alerts import AlertState, AlertView
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from .domain import Raise, Resolve

LIVE = [AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value]


def _view(document: dict[str, Any]) -> AlertView:
    return AlertView(**{k: v for k, v in document.items() if k in AlertView.model_fields})


class AlertStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._alerts = client[database]["alerts"]
        self._conditions = client[database]["conditions"]
        # What is open, held in memory so that the flood of events that change nothing costs
        # no database call; reloaded now and then for what other replicas changed.
        self._open: set[str] = set()
        self._conditions_open: set[str] = set()
        # Keys changed here while a reload was reading: the reload must not undo them.
        self._tick = 0
        self._touched: dict[str, int] = {}

    def _touch(self, key: str) -> None:
        self._tick += 1
        self._touched[key] = self._tick

    async def load(self) -> None:
        began = self._tick
        await self._alerts.create_index([("tenant_id", 1), ("state", 1)])
        cursor = self._alerts.find({"state": {"$in": LIVE}}, {"_id": 1})
        open_ = {document["_id"] async for document in cursor}
        conditions = {document["_id"] async for document in self._conditions.find({}, {"_id": 1})}
        for key, tick in self._touched.items():
            if tick > began:  # raised, resolved, started or ended while this reload read
                for loaded, current in ((open_, self._open), (conditions, self._conditions_open)):
                    if key in current:
                        loaded.add(key)
                    else:
                        loaded.discard(key)
        self._open, self._conditions_open = open_, conditions
        self._touched = {key: tick for key, tick in self._touched.items() if tick > began}

    async def live_summary(self) -> list[dict[str, Any]]:
        """Tenant, cause, severity and state of every live alert (for the gauges)."""
        cursor = self._alerts.find(
            {"state": {"$in": LIVE}}, {"_id": 0, "tenant_id": 1, "cause": 1, "severity": 1, "state": 1}
        )
        return [document async for document in cursor]

    async def raise_(self, action: Raise, now: datetime) -> AlertView | None:
        """The alert if this raised it (new or reopened); None if it was already open."""
        if action.key in self._open:
            return None
        fields = {
            "alert_id": uuid.uuid4().hex,
            "tenant_id": action.tenant_id,
            "cause": action.cause.value,
            "severity": action.severity.value,
            "state": AlertState.OPEN.value,
            "title": action.title,
            "detail": action.detail,
            "remedy": action.remedy,
            "principal_address": action.principal_address,
            "device_id": action.device_id,
            "for_administrators": action.for_administrators,
            "raised_at": now,
            "last_seen_at": now,
            "occurrences": 1,
            "resolved_at": None,
        }
        self._open.add(action.key)
        self._touch(action.key)
        reopened = await self._alerts.find_one_and_update(
            {"_id": action.key, "state": AlertState.RESOLVED.value},
            {"$set": fields},
            return_document=ReturnDocument.AFTER,
        )
        if reopened is not None:
            return _view(reopened)
        try:
            await self._alerts.insert_one({"_id": action.key, **fields})
        except DuplicateKeyError:
            await self._alerts.update_one(
                {"_id": action.key}, {"$set": {"last_seen_at": now}, "$inc": {"occurrences": 1}}
            )
            return None
        return _view(fields)

    async def resolve(self, action: Resolve, now: datetime) -> AlertView | None:
        """The alert if this resolved it; None if there was none open."""
        if action.key not in self._open:
            return None
        self._open.discard(action.key)
        self._touch(action.key)
        document = await self._alerts.find_one_and_update(
            {"_id": action.key, "state": {"$in": LIVE}},
            {"$set": {"state": AlertState.RESOLVED.value, "resolved_at": now, "resolution": action.detail}},
            return_document=ReturnDocument.AFTER,
        )
        return _view(document) if document is not None else None

    async def start_condition(self, key: str, since: datetime, details: dict[str, Any]) -> None:
        """A cause that becomes an alert only if it lasts (a provider unreachable for a while)."""
        if key in self._conditions_open:
            return
        self._conditions_open.add(key)
        self._touch(key)
        await self._conditions.update_one(
            {"_id": key}, {"$setOnInsert": {"since": since, **details}}, upsert=True
        )

    async def condition_exists(self, key: str) -> bool:
        return await self._conditions.find_one({"_id": key}, {"_id": 1}) is not None

    async def end_condition(self, key: str) -> None:
        """Ends a condition; free when there is none (every refresh ends one, most often none)."""
        if key not in self._conditions_open:
            return
        self._conditions_open.discard(key)
        self._touch(key)
        await self._conditions.delete_one({"_id": key})

    async def lasting_conditions(self, started_before: datetime) -> list[dict[str, Any]]:
        return [d async for d in self._conditions.find({"since": {"$lte": started_before}})]

    async def note_channel_problem(self, alert_id: str, problem: str) -> None:
        await self._alerts.update_one({"alert_id": alert_id}, {"$addToSet": {"channel_problems": problem}})

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> AlertView | None:
        document = await self._alerts.find_one_and_update(
            {"tenant_id": tenant_id, "alert_id": alert_id, "state": AlertState.OPEN.value},
            {"$set": {"state": AlertState.ACKNOWLEDGED.value, "acknowledged_by": by}},
            return_document=ReturnDocument.AFTER,
        )
        return _view(document) if document is not None else None

    async def list(self, tenant_id: str, device_id: str | None, include_resolved: bool) -> list[AlertView]:
        query: dict[str, Any] = {"tenant_id": tenant_id}
        if not include_resolved:
            query["state"] = {"$in": LIVE}
        if device_id is not None:
            # A device's feed: the tenant-wide warnings, and those for users at this device.
            query["$or"] = [{"device_id": None}, {"device_id": device_id}]
        cursor = self._alerts.find(query).sort("raised_at", -1).limit(500)
        return [_view(document) async for document in cursor]
