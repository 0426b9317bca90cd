"""The landing page: the fleet overview — every tenant this key may see, with its
administrator token, alerts, users to sign in, failed jobs, devices and queue; sorted,
filtered and paged by the query string, from the same use case as `GET /v1/admin/overview`."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...errors import EventBusUnavailable, InvalidRequest
from ...schemas import OverviewTokenState
from ...use_cases import OverviewQuery, OverviewSort
from ...use_cases.overview import overview_query
from ..deps import ConsoleUserDep, Protected, ServicesDep
from ..pages import render

router = APIRouter(dependencies=[Protected])

TOKEN_WORDS = {
    OverviewTokenState.ACQUIRED: "Acquired",
    OverviewTokenState.EXPIRING: "Expiring",
    OverviewTokenState.NOT_ACQUIRED: "Not acquired",
    OverviewTokenState.REAUTHORIZATION_REQUIRED: "Re-authorization needed",
}
"""The seed's words for the administrator token's states ([Acquired], …)."""

COLUMNS = (
    (OverviewSort.TENANT, "Tenant"),
    (OverviewSort.TOKEN, "Administrator token"),
    (OverviewSort.ALERTS, "Alerts"),
    (OverviewSort.USERS_WAITING, "Users to sign in"),
    (OverviewSort.FAILED, "Failed (24 h)"),
    (OverviewSort.DEAD_LETTERED, "Dead letters (24 h)"),
    (OverviewSort.DEVICES, "Devices"),
    (OverviewSort.QUEUED, "Queued"),
)


def query_of(request: Request) -> OverviewQuery:
    """The query string, read by the API's rules (`overview_query`): a value they refuse is a
    422 page that says which."""
    params = request.query_params
    attention = {"true": True, "false": False}.get(params.get("needs_attention", ""))
    try:
        page = int(params.get("page") or 1)
    except ValueError as exc:
        raise InvalidRequest("page: a number from 1") from exc
    return overview_query(
        params.get("sort"),
        params.get("order") or None,
        params.getlist("token_state"),
        params.get("q"),
        attention,
        page,
    )


@router.get("/", name="overview")
async def overview(request: Request, user: ConsoleUserDep, services: ServicesDep) -> Response:
    query = query_of(request)
    shown = await services.overview.page(user.administrator, query)
    # The consumers' lag is every tenant's: shown to keys that see the whole fleet, as in the
    # API (`GET /v1/admin/queues`); the page stands without it when the bus does not answer.
    try:
        queues = await services.queues.views(user.administrator)
    except EventBusUnavailable:
        queues = None
    kept = {k: v for k, v in request.query_params.multi_items() if k not in ("sort", "order", "page")}

    def link(**changes: object) -> str:
        """This page's address with `changes` to its query (None drops a parameter)."""
        current = dict(kept, sort=query.sort.value, page=str(query.page))
        if query.descending is not None:
            current["order"] = "desc" if query.descending else "asc"
        for name, value in changes.items():
            if value is None:
                current.pop(name, None)
            else:
                current[name] = str(value)
        items = [(k, v) for k, v in current.items() if k != "token_state"]
        items += [("token_state", s.value) for s in sorted(query.token_states)]
        return "?" + urlencode(items)

    return render(
        request,
        "overview.html",
        user,
        overview=shown,
        query=query,
        columns=COLUMNS,
        token_words=TOKEN_WORDS,
        token_states=list(OverviewTokenState),
        link=link,
        queues=queues,
    )
