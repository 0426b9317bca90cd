"""The alert store in MongoDB: one document per dedupe key, open → acknowledged → resolved.

Raising is idempotent: an event processed twice (a redelivery after a restart) finds the
alert already open and changes nothing. A resolved alert raised again reopens with a new
alert id. Open keys are also kept in memory, so the flood of events that change nothing
(a thousand failures of one dead grant, every sent message that could resolve an SMTP
alert) costs no database write; the set is reloaded periodically, for replicas that
missed each other's changes.

Events reach the notifier on two consumers (token and mail events), each maybe late: a job
that failed on a dead grant can be read after the event saying the grant was acquired
again. So every change records the time of the event behind it (`changed_at`), and only a
newer event changes the alert again: a late failure does not reopen an alert the
re-acquisition resolved, and a late success does not resolve one a newer failure raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleetmail_contracts.alerts import AlertCounts, AlertState, AlertView
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..domain import Condition, Raise, Resolve, counts_by_tenant
from ..ports import LiveAlert

LIVE = [AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value]


def _millis(moment: datetime) -> datetime:
    """A time as MongoDB keeps it (milliseconds), so comparisons here and there agree."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _changed(operator: str, moment: datetime) -> dict[str, Any]:
    """A filter on `changed_at`; an alert written before it was kept has none."""
    return {"$or": [{"changed_at": {operator: moment}}, {"changed_at": None}]}


def _view(document: dict[str, Any]) -> AlertView:
    return AlertView(**{k: v for k, v in document.items() if k in AlertView.model_fields})


def _condition_document(condition: Condition) -> dict[str, Any]:
    principal = {
        "tenant_id": condition.tenant_id,
        "kind": condition.principal_kind,
        "address": condition.address,
    }
    return {
        "since": condition.since,
        "principal": principal,
        "provider": condition.provider,
        "error": condition.error,
    }


def _condition(document: dict[str, Any]) -> Condition:
    principal = document.get("principal") or {}
    return Condition(
        key=document["_id"],
        since=document["since"],
        tenant_id=str(principal.get("tenant_id", "")),
        principal_kind=str(principal.get("kind", "")),
        address=principal.get("address"),
        provider=document.get("provider"),
        error=document.get("error"),
    )


class MongoAlertStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._alerts = client[database]["alerts"]
        self._conditions = client[database]["conditions"]
        # What is open, held in memory so that the flood of events that change nothing costs
        # no database call; reloaded now and then for what other replicas changed.
        self._open: set[str] = set()
        # When alerts resolved here were resolved (event time): a flood of late reports of a
        # cause already gone costs no database call. Only a cache: the database decides.
        self._ended: dict[str, datetime] = {}
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
        await self._alerts.create_index([("state", 1), ("tenant_id", 1)])  # every tenant's live alerts
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
        self._ended = {}
        self._touched = {key: tick for key, tick in self._touched.items() if tick > began}

    async def live_summary(self) -> list[LiveAlert]:
        """Tenant, cause, severity and state of every live alert (for the gauges)."""
        cursor = self._alerts.find(
            {"state": {"$in": LIVE}}, {"_id": 0, "tenant_id": 1, "cause": 1, "severity": 1, "state": 1}
        )
        return [
            LiveAlert(
                str(d.get("tenant_id")), str(d.get("cause")), str(d.get("severity")), str(d.get("state"))
            )
            async for d in cursor
        ]

    async def counts_for_administrators(self, tenant_ids: Sequence[str] | None) -> AlertCounts:
        match: dict[str, Any] = {"state": {"$in": LIVE}, "for_administrators": {"$ne": False}}
        if tenant_ids is not None:
            match["tenant_id"] = {"$in": list(tenant_ids)}
        cursor = await self._alerts.aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": {"tenant_id": "$tenant_id", "severity": "$severity"},
                        "count": {"$sum": 1},
                    }
                },
            ]
        )
        return counts_by_tenant(
            [(d["_id"]["tenant_id"], d["_id"]["severity"], d["count"]) async for d in cursor]
        )

    async def raise_(self, action: Raise, now: datetime) -> AlertView | None:
        """The alert if this raised it (new or reopened); None if it was already open, or
        if an event newer than this one resolved it (a late report of a cause already gone)."""
        if action.key in self._open:
            return None
        observed = _millis(action.observed_at or now)
        ended = self._ended.get(action.key)
        if ended is not None and observed <= ended:
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
            "changed_at": observed,
        }
        # Open in memory before the write: the next event for this key costs nothing.
        self._open.add(action.key)
        self._touch(action.key)
        raised: AlertView | None = None
        reopened = await self._alerts.find_one_and_update(
            {"_id": action.key, "state": AlertState.RESOLVED.value, **_changed("$lt", observed)},
            {"$set": fields},
            return_document=ReturnDocument.AFTER,
        )
        if reopened is not None:
            raised = _view(reopened)
        else:
            try:
                await self._alerts.insert_one({"_id": action.key, **fields})
                raised = _view(fields)
            except DuplicateKeyError:
                # Open already (raised elsewhere), or resolved by a newer event: stale.
                seen = await self._alerts.update_one(
                    {"_id": action.key, "state": {"$in": LIVE}},
                    {"$set": {"last_seen_at": now}, "$inc": {"occurrences": 1}},
                )
                if seen.matched_count == 0:
                    self._open.discard(action.key)
                    current = await self._alerts.find_one({"_id": action.key}, {"changed_at": 1})
                    if current is not None and current.get("changed_at") is not None:
                        # The next late reports of this cause are refused without a call.
                        self._ended[action.key] = current["changed_at"]
        # Again after the write: a reload that read before it must not undo this.
        self._touch(action.key)
        return raised

    async def resolve(self, action: Resolve, now: datetime) -> AlertView | None:
        """The alert if this resolved it; None if there was none open, or if an event newer
        than this one raised it."""
        if action.key not in self._open:
            return None
        observed = _millis(action.observed_at or now)
        document = await self._alerts.find_one_and_update(
            {"_id": action.key, "state": {"$in": LIVE}, **_changed("$lte", observed)},
            {
                "$set": {
                    "state": AlertState.RESOLVED.value,
                    "resolved_at": now,
                    "resolution": action.detail,
                    "changed_at": observed,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if document is not None:
            self._open.discard(action.key)
            self._ended[action.key] = observed
        elif await self._alerts.find_one({"_id": action.key, "state": {"$in": LIVE}}, {"_id": 1}) is None:
            self._open.discard(action.key)  # resolved elsewhere meanwhile
        self._touch(action.key)
        return _view(document) if document is not None else None

    async def start_condition(self, condition: Condition) -> None:
        """A cause that becomes an alert only if it lasts (a provider unreachable for a while)."""
        key = condition.key
        if key in self._conditions_open:
            return
        self._conditions_open.add(key)
        self._touch(key)
        await self._conditions.update_one(
            {"_id": key}, {"$setOnInsert": _condition_document(condition)}, upsert=True
        )
        self._touch(key)  # after the write too: a reload reading before it keeps this

    async def condition_exists(self, key: str) -> bool:
        return await self._conditions.find_one({"_id": key}, {"_id": 1}) is not None

    async def end_condition(self, key: str) -> None:
        """Ends a condition; free when there is none (every refresh ends one, most often none)."""
        if key not in self._conditions_open:
            return
        self._conditions_open.discard(key)
        self._touch(key)
        await self._conditions.delete_one({"_id": key})
        self._touch(key)

    async def lasting_conditions(self, started_before: datetime) -> list[Condition]:
        return [_condition(d) async for d in self._conditions.find({"since": {"$lte": started_before}})]

    async def note_channel_problem(self, alert_id: str, problem: str) -> None:
        await self._alerts.update_one({"alert_id": alert_id}, {"$addToSet": {"channel_problems": problem}})

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> AlertView | None:
        document = await self._alerts.find_one_and_update(
            {"tenant_id": tenant_id, "alert_id": alert_id, "state": AlertState.OPEN.value},
            {"$set": {"state": AlertState.ACKNOWLEDGED.value, "acknowledged_by": by}},
            return_document=ReturnDocument.AFTER,
        )
        return _view(document) if document is not None else None

    async def list_alerts(
        self, tenant_id: str, device_id: str | None, include_resolved: bool
    ) -> list[AlertView]:
        query: dict[str, Any] = {"tenant_id": tenant_id}
        if not include_resolved:
            query["state"] = {"$in": LIVE}
        if device_id is not None:
            # A device's feed: the tenant-wide warnings, and those for users at this device.
            query["$or"] = [{"device_id": None}, {"device_id": device_id}]
        cursor = self._alerts.find(query).sort("raised_at", -1).limit(500)
        return [_view(document) async for document in cursor]
