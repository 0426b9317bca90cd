"""The landing page: the fleet overview — every tenant this key may see, with its
administrator token, alerts, users to sign in, failed jobs, devices and queue; sorted,
filtered and paged by the query string, from the same use case as `GET /v1/admin/overview`."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...errors import InvalidRequest
from ...schemas import OverviewTokenState
from ...use_cases import OverviewQuery, OverviewSort
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


def overview_query(request: Request) -> OverviewQuery:
    """The query string as the API reads its parameters; a value it does not know is a 422
    page that says which."""
    params = request.query_params
    try:
        sort = OverviewSort(params.get("sort") or OverviewSort.TENANT)
        order = params.get("order") or None
        if order not in (None, "asc", "desc"):
            raise ValueError(f"order: {order!r} is not asc or desc")
        states = frozenset(OverviewTokenState(s) for s in params.getlist("token_state") if s)
        attention = {"": None, "true": True, "false": False}[params.get("needs_attention", "")]
        page = int(params.get("page") or 1)
        if not 1 <= page <= 100_000:
            raise ValueError("page: from 1")
    except (ValueError, KeyError) as exc:
        raise InvalidRequest(f"the overview cannot be shown that way: {exc}") from exc
    text = (params.get("q") or "").strip()[:100] or None
    return OverviewQuery(
        sort=sort,
        descending=None if order is None else order == "desc",
        token_states=states,
        text=text,
        needs_attention=attention,
        page=page,
    )


@router.get("/", name="overview")
async def overview(request: Request, user: ConsoleUserDep, services: ServicesDep) -> Response:
    query = overview_query(request)
    shown = await services.overview.page(user.administrator, query)
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
    )
