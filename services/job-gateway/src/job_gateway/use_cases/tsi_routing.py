"""A tenant's TSI routing table: where a fax received from a sender (its TSI) is forwarded.

Kept in job-gateway's own collection and applied at intake: a TSI Routing job that comes
without recipients is given its route's (or the default's) before it is queued, so the
device hears at once when a fax has nowhere to go, and the queued job carries its
recipients (a retry or a resend after a table change goes where it was first sent). Edits
read the table and save it only at the revision they read (lost races are tried again).
"""

from __future__ import annotations

from collections.abc import Callable

from ..domain import check_tsi_routing, route_by_tsi, tsi_key
from ..errors import Conflict, TsiRouteNotFound
from ..ports import TsiRoutingStore
from ..schemas import JobSubmission, TsiRoute, TsiRoutingTable

ATTEMPTS = 5


class TsiRouting:
    def __init__(self, store: TsiRoutingStore, max_recipients: int) -> None:
        self.store = store
        self.max_recipients = max_recipients

    async def table(self, tenant_id: str) -> TsiRoutingTable:
        return (await self.store.tsi_routing(tenant_id))[0]

    async def replace(self, tenant_id: str, table: TsiRoutingTable) -> TsiRoutingTable:
        check_tsi_routing(table, self.max_recipients)
        return await self._change(tenant_id, lambda _: table)

    async def set_route(self, tenant_id: str, tsi: str, recipients: list[str]) -> TsiRoutingTable:
        """Add the TSI's route, or replace its recipients (the TSI keeps the spelling given)."""

        def change(table: TsiRoutingTable) -> TsiRoutingTable:
            others = [r for r in table.routes if tsi_key(r.tsi) != tsi_key(tsi)]
            changed = table.model_copy(update={"routes": [*others, TsiRoute(tsi=tsi, recipients=recipients)]})
            check_tsi_routing(changed, self.max_recipients)
            return changed

        return await self._change(tenant_id, change)

    async def remove_route(self, tenant_id: str, tsi: str) -> TsiRoutingTable:
        def change(table: TsiRoutingTable) -> TsiRoutingTable:
            kept = [r for r in table.routes if tsi_key(r.tsi) != tsi_key(tsi)]
            if len(kept) == len(table.routes):
                raise TsiRouteNotFound(f"no route for the TSI {tsi[:64]!r}")
            return table.model_copy(update={"routes": kept})

        return await self._change(tenant_id, change)

    async def routed(self, tenant_id: str, submission: JobSubmission) -> JobSubmission:
        """A TSI Routing job without recipients, given its TSI's route (or the default)."""
        if submission.to or submission.cc or submission.bcc:
            return submission
        recipients = route_by_tsi(await self.table(tenant_id), submission.tsi)
        return submission.model_copy(update={"to": recipients})

    async def _change(
        self, tenant_id: str, change: Callable[[TsiRoutingTable], TsiRoutingTable]
    ) -> TsiRoutingTable:
        for _ in range(ATTEMPTS):
            current, revision = await self.store.tsi_routing(tenant_id)
            changed = change(current)
            if await self.store.save_tsi_routing(tenant_id, changed, revision):
                return changed
        raise Conflict("the TSI routing table kept changing while this edit was saved: try again")
