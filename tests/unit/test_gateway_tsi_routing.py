"""TSI routing and forwarded faxes at intake, with in-memory ports: the table's rules, a TSI
Routing job given its recipients, and faxes refused before anything is stored."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from fleetmail_contracts.jobs import JobFunction
from job_gateway.domain import Device, check_tsi_routing, route_by_tsi, tsi_key
from job_gateway.errors import (
    Conflict,
    FaxDocumentRequired,
    InvalidAddress,
    InvalidRequest,
    TooManyRecipients,
    TsiNotRouted,
    TsiRouteNotFound,
    UnsafeHeader,
)
from job_gateway.schemas import JobSubmission, TsiRoute, TsiRoutingTable
from job_gateway.settings import GatewaySettings
from job_gateway.use_cases import JobIntake, TsiRouting
from starlette.datastructures import Headers, UploadFile

from tests.fakes.gateway import InMemoryAttachments, InMemoryGatewayStore, RecordingPublisher

DEVICE = Device("fax-1", "t1")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLE = TsiRoutingTable(
    routes=[
        TsiRoute(tsi="ACME Sales", recipients=["sales@t1.example"]),
        TsiRoute(tsi="+49 30 1234", recipients=["berlin@t1.example", "ops@t1.example"]),
    ],
    default=["faxes@t1.example"],
)


def fax() -> UploadFile:
    return UploadFile(
        io.BytesIO(b"II*\x00"), filename="fax.tif", headers=Headers({"content-type": "image/tiff"})
    )


def test_a_tsi_matches_its_route_whatever_the_case_and_spacing() -> None:
    assert tsi_key("  acme   SALES ") == tsi_key("ACME Sales")
    assert route_by_tsi(TABLE, "acme  sales") == ["sales@t1.example"]
    assert route_by_tsi(TABLE, "+49 30 1234") == ["berlin@t1.example", "ops@t1.example"]


def test_a_tsi_without_a_route_goes_to_the_default_and_without_one_is_refused() -> None:
    assert route_by_tsi(TABLE, "Unknown Corp") == ["faxes@t1.example"]
    assert route_by_tsi(TABLE, None) == ["faxes@t1.example"]
    no_default = TABLE.model_copy(update={"default": []})
    with pytest.raises(TsiNotRouted, match="no route for TSI 'Unknown Corp' and no default"):
        route_by_tsi(no_default, "Unknown Corp")


@pytest.mark.parametrize(
    ("table", "error", "words"),
    [
        (TsiRoutingTable(default=["not an address"]), InvalidAddress, "default: not an e-mail address"),
        (
            TsiRoutingTable(routes=[TsiRoute(tsi="A", recipients=["x@t1.example\r\nBcc: y@evil.example"])]),
            InvalidAddress,
            "route 'A'",
        ),
        (
            TsiRoutingTable(
                routes=[
                    TsiRoute(tsi="ACME", recipients=["a@t1.example"]),
                    TsiRoute(tsi="acme ", recipients=["b@t1.example"]),
                ]
            ),
            InvalidRequest,
            "listed twice",
        ),
        (
            TsiRoutingTable(routes=[TsiRoute(tsi="   ", recipients=["a@t1.example"])]),
            InvalidRequest,
            "not a TSI",
        ),
        (TsiRoutingTable(default=[f"u{n}@t1.example" for n in range(51)]), TooManyRecipients, "at most 50"),
    ],
)
def test_a_table_that_breaks_a_rule_is_refused(table: TsiRoutingTable, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        check_tsi_routing(table, max_recipients=50)


async def test_routes_are_added_replaced_and_removed_without_touching_the_others() -> None:
    routing = TsiRouting(InMemoryGatewayStore(), max_recipients=50)
    await routing.replace("t1", TABLE)
    changed = await routing.set_route("t1", "ACME SALES", ["new-sales@t1.example"])
    assert [(r.tsi, r.recipients) for r in changed.routes] == [
        ("+49 30 1234", ["berlin@t1.example", "ops@t1.example"]),
        ("ACME SALES", ["new-sales@t1.example"]),
    ]
    removed = await routing.remove_route("t1", "+49  30 1234")
    assert [r.tsi for r in removed.routes] == ["ACME SALES"] and removed.default == TABLE.default
    assert await routing.table("t1") == removed
    with pytest.raises(TsiRouteNotFound):
        await routing.remove_route("t1", "+49 30 1234")
    assert await routing.table("t2") == TsiRoutingTable(), "another tenant's table is its own"


async def test_an_edit_that_keeps_losing_the_race_is_refused_not_lost() -> None:
    class Racing(InMemoryGatewayStore):
        async def save_tsi_routing(self, tenant_id: str, table: TsiRoutingTable, expected: int) -> bool:
            await super().save_tsi_routing(tenant_id, TsiRoutingTable(default=["other@t1.example"]), expected)
            return await super().save_tsi_routing(tenant_id, table, expected)

    store = Racing()
    with pytest.raises(Conflict, match="try again"):
        await TsiRouting(store, max_recipients=50).set_route("t1", "ACME", ["a@t1.example"])
    assert (await store.tsi_routing("t1"))[0].default == ["other@t1.example"]


class Parts:
    def __init__(self) -> None:
        self.store = InMemoryGatewayStore()
        self.attachments = InMemoryAttachments()
        self.publisher = RecordingPublisher()
        self.routing = TsiRouting(self.store, max_recipients=50)
        self.intake = JobIntake(
            GatewaySettings(),
            self.store,
            self.attachments,
            self.publisher,
            clock=lambda: NOW,
            tsi_routing=self.routing,
        )


async def test_a_tsi_routing_job_without_recipients_goes_where_the_table_says() -> None:
    parts = Parts()
    await parts.routing.replace("t1", TABLE)
    submission = JobSubmission(function=JobFunction.TSI_ROUTING, tsi="ACME Sales")
    await parts.intake.submit(DEVICE, submission, [fax()])
    named = JobSubmission(function=JobFunction.TSI_ROUTING, tsi="ACME Sales", to=["chosen@t1.example"])
    await parts.intake.submit(DEVICE, named, [fax()])
    [(_, routed, _), (_, chosen, _)] = parts.publisher.published
    assert routed.model_dump()["to"] == ("sales@t1.example",)
    assert chosen.model_dump()["to"] == ("chosen@t1.example",), "a job's own recipients win"


async def test_a_tsi_with_nowhere_to_go_is_refused_before_anything_is_kept() -> None:
    parts = Parts()
    submission = JobSubmission(function=JobFunction.TSI_ROUTING, tsi="Nobody Ltd")
    with pytest.raises(TsiNotRouted):
        await parts.intake.submit(DEVICE, submission, [fax()])
    assert parts.publisher.published == [] and parts.attachments.objects == {} and parts.store.jobs == {}


@pytest.mark.parametrize("function", [JobFunction.FORWARD_TX, JobFunction.TSI_ROUTING])
async def test_a_forwarded_fax_without_its_document_is_refused(function: JobFunction) -> None:
    parts = Parts()
    submission = JobSubmission(function=function, to=["ops@t1.example"])
    with pytest.raises(FaxDocumentRequired, match="attach the fax document"):
        await parts.intake.submit(DEVICE, submission, [])
    assert parts.publisher.published == [] and parts.store.jobs == {}


async def test_a_line_break_in_a_fax_senders_number_is_refused() -> None:
    submission = JobSubmission(
        function=JobFunction.FORWARD_TX, to=["ops@t1.example"], sender_fax_number="+49\r\nBcc: x@evil.example"
    )
    with pytest.raises(UnsafeHeader):
        await Parts().intake.submit(DEVICE, submission, [fax()])
