"""The fleet overview against the running stack: four tenants in different states, their
figures as the tenants' own routes show them, sorting, filtering, paging, who sees what, and
`fleetmail status` reading it.

Other tests of the session make tenants too: every request here filters on this test's tag
in the tenants' names (`q`), and the fleet-wide totals are checked to hold these tenants.
"""

import asyncio
import uuid

import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.cli import cli
from tests.utils.jobs import final_status, submit
from tests.utils.tenants import google_grant_in_testing_mode, new_tenant, user_signs_in


async def named(admin: httpx.AsyncClient, tenant_id: str, name: str) -> None:
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    settings["display_name"] = name
    assert (await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)).status_code == 200


async def device(admin: httpx.AsyncClient, tenant_id: str, device_id: str) -> tuple[str, str]:
    created = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
    ).json()
    return created["device_id"], created["secret"]


async def revoked(stack, emulator_http: httpx.AsyncClient, principal: Principal) -> None:
    """Revoked at the provider, and found dead by the next refresh."""
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": principal.address}
    )
    [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert reply.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED, reply


async def alert_counts(admin: httpx.AsyncClient, tenant_id: str) -> dict[str, int]:
    """The tenant's unresolved alerts by severity, from its own alerts route."""
    counts = {"critical": 0, "warning": 0, "info": 0}
    for alert in (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json():
        counts[alert["severity"]] += 1
    return counts


async def job_of(stack, panel: tuple[str, str]) -> tuple[httpx.AsyncClient, str]:
    """A job the device submitted, and the device's client to follow it (the caller closes it)."""
    device_client = httpx.AsyncClient(base_url=stack.gateway_url, auth=panel, timeout=30)
    return device_client, await submit(device_client, {"to": ["x@fabrikam.example"]})


@pytest.fixture(scope="module")
async def fleet(stack, emulator_http) -> dict[str, str]:
    """acquired: a good token and two devices; not_acquired: OAuth on, never signed in, one job
    parked for it; reauthorization: its administrator's and a user's tokens revoked at the
    emulator, one job failed on the dead grant; expiring: a Google app in Testing status.
    The four are set up side by side."""
    tag = f"ov{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as admin:

        async def acquired() -> str:
            tenant_id = (await tenant_with_administrator_grant(stack, emulator_http)).tenant_id
            for n in range(2):
                await device(admin, tenant_id, f"mfp-{n}")
            return tenant_id

        async def reauthorization() -> str:
            dead = await tenant_with_administrator_grant(stack, emulator_http)
            panel = await device(admin, dead.tenant_id, "mfp")
            address = f"user@{dead.tenant_id}.example"
            await user_signs_in(stack, emulator_http, panel, address)
            await revoked(stack, emulator_http, dead)
            await revoked(
                stack,
                emulator_http,
                Principal(tenant_id=dead.tenant_id, kind=PrincipalKind.USER, address=address),
            )
            device_client, job_id = await job_of(stack, panel)
            try:
                failed = await final_status(device_client, job_id)
            finally:
                await device_client.aclose()
            assert failed["status"] == "failed", failed
            return dead.tenant_id

        async def not_acquired() -> str:
            tenant_id, _ = await new_tenant(admin)
            device_client, job_id = await job_of(stack, await device(admin, tenant_id, "mfp"))

            async def is_parked() -> bool:
                return (await device_client.get(f"/v1/jobs/{job_id}")).json()["status"] == "parked"

            try:
                await eventually(is_parked, within=60, what="the job to wait for the administrator's sign-in")
            finally:
                await device_client.aclose()
            return tenant_id

        found = await asyncio.gather(
            acquired(),
            not_acquired(),
            reauthorization(),
            google_grant_in_testing_mode(stack, emulator_http, admin),
        )
        tenants = dict(zip(("acquired", "not_acquired", "reauthorization", "expiring"), found, strict=True))
        for state, tenant_id in tenants.items():
            await named(admin, tenant_id, f"{tag} {state}")
    return {"tag": tag, **tenants}


async def overview(admin: httpx.AsyncClient, **params: object) -> dict:
    response = await admin.get("/v1/admin/overview", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_each_tenant_has_its_token_state_alerts_users_jobs_and_devices(admin, fleet) -> None:
    async def as_expected() -> dict[str, dict]:
        rows = {r["tenant_id"]: r for r in (await overview(admin, q=fleet["tag"]))["rows"]}
        assert len(rows) == 4, rows
        for tenant_id, row in rows.items():
            assert row["alerts"] == await alert_counts(admin, tenant_id), row  # the alerts route's
        assert rows[fleet["reauthorization"]]["alerts"]["critical"] >= 1
        assert rows[fleet["acquired"]]["alerts"] == {"critical": 0, "warning": 0, "info": 0}
        return rows

    rows = await eventually(as_expected, within=60, what="the alerts to be raised and resolved")
    good, waiting = rows[fleet["acquired"]], rows[fleet["not_acquired"]]
    dead, expiring = rows[fleet["reauthorization"]], rows[fleet["expiring"]]
    assert good["token"]["state"] == "acquired" and 88 <= good["token"]["days_left"] <= 90
    assert (good["devices"], good["users_waiting"], good["failed_24h"], good["queued"]) == (2, 0, 0, 0)
    assert good["needs_attention"] is False and good["provider"] == "microsoft" and good["oauth_enabled"]

    assert waiting["token"] == {"state": "not_acquired", "expires_on": None, "days_left": None}
    assert (waiting["queued"], waiting["queued_by_status"]) == (1, {"parked": 1})
    assert waiting["needs_attention"] is True

    assert dead["token"]["state"] == "reauthorization_required" and dead["token"]["days_left"] is None
    assert (dead["users_waiting"], dead["failed_24h"], dead["dead_lettered_24h"]) == (1, 1, 1)
    assert (dead["devices"], dead["queued"]) == (1, 0)

    assert expiring["token"]["state"] == "expiring" and expiring["provider"] == "google"
    assert 6 <= expiring["token"]["days_left"] <= 7 and expiring["token"]["expires_on"]


async def test_the_fleet_totals_count_every_tenant_whatever_the_filter(admin, fleet) -> None:
    everything = await overview(admin)
    mine = await overview(admin, q=fleet["tag"], token_state="expiring")
    for figure in ("tenants", "token_states", "devices"):
        assert mine["totals"][figure] == everything["totals"][figure]
    assert everything["totals"]["tenants"] == everything["total"] >= 4
    assert everything["totals"]["token_states"]["reauthorization_required"] >= 1
    assert everything["totals"]["devices"] >= 4 and everything["totals"]["failed_24h"] >= 1
    assert mine["total"] == 1 and mine["rows"][0]["tenant_id"] == fleet["expiring"]


async def test_rows_sort_filter_and_page(admin, fleet) -> None:
    by_token = await overview(admin, q=fleet["tag"], sort="token")
    assert [r["tenant_id"] for r in by_token["rows"]] == [
        fleet["reauthorization"],
        fleet["not_acquired"],
        fleet["expiring"],
        fleet["acquired"],
    ]
    reversed_ = await overview(admin, q=fleet["tag"], sort="token", order="desc")
    assert [r["tenant_id"] for r in reversed_["rows"]] == [r["tenant_id"] for r in by_token["rows"]][::-1]
    by_days = await overview(admin, q=fleet["tag"], sort="days_left")
    assert [r["tenant_id"] for r in by_days["rows"][:2]] == [fleet["expiring"], fleet["acquired"]]
    by_devices = await overview(admin, q=fleet["tag"], sort="devices", limit=1)
    assert (by_devices["rows"][0]["tenant_id"], by_devices["total"], by_devices["pages"]) == (
        fleet["acquired"],
        4,
        4,
    )

    first = await overview(admin, q=fleet["tag"], sort="token", limit=3, page=1)
    second = await overview(admin, q=fleet["tag"], sort="token", limit=3, page=2)
    assert (first["total"], first["pages"], second["page"]) == (4, 2, 2)
    assert [r["tenant_id"] for r in first["rows"] + second["rows"]] == [
        r["tenant_id"] for r in by_token["rows"]
    ]

    calm = await overview(admin, q=fleet["tag"], needs_attention="false")
    assert [r["tenant_id"] for r in calm["rows"]] == [fleet["acquired"]]
    two = await overview(admin, q=fleet["tag"], token_state=["expiring", "not_acquired"])
    assert {r["tenant_id"] for r in two["rows"]} == {fleet["expiring"], fleet["not_acquired"]}
    assert (await overview(admin, q=f"{fleet['tag']} EXPIRING"))["total"] == 1, "case aside"


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "mood"},
        {"order": "sideways"},
        {"token_state": "dead"},
        {"limit": 0},
        {"page": 0},
        {"q": "x" * 101},
    ],
)
async def test_a_bad_sort_or_filter_is_a_422_problem(admin, params) -> None:
    response = await admin.get("/v1/admin/overview", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 422


async def test_a_fleet_administrator_sees_only_its_tenants_and_an_operator_all(stack, admin, fleet) -> None:
    mine = [fleet["acquired"], fleet["not_acquired"]]
    keys = {}
    for role, tenant_ids in (("fleet_admin", mine), ("operator", None)):
        created = await admin.post(
            "/v1/admin/api-keys", json={"name": role, "role": role, "tenant_ids": tenant_ids}
        )
        assert created.status_code == 201, created.text
        keys[role] = created.json()["key"]
    everything = await overview(admin)
    for role, expected in (("fleet_admin", 2), ("operator", everything["totals"]["tenants"])):
        headers = {"Authorization": f"Bearer {keys[role]}"}
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as theirs:
            seen = await overview(theirs, limit=1000)
        assert seen["totals"]["tenants"] == expected
        if role == "fleet_admin":
            assert sorted(r["tenant_id"] for r in seen["rows"]) == sorted(mine)
            assert seen["totals"]["devices"] == 3  # two and one: nothing of the other tenants


async def test_fleetmail_status_shows_every_tenant_from_the_overview(stack, fleet) -> None:
    status = await asyncio.to_thread(cli, stack, "status")
    assert status.exit_code == 0, status.output
    lines = {
        state: next(line for line in status.output.splitlines() if fleet[state] in line)
        for state in fleet
        if state != "tag"
    }
    assert "Acquired" in lines["acquired"] and "Not acquired" in lines["not_acquired"]
    assert "re-auth" in lines["reauthorization"] and "expiring" in lines["expiring"]
    assert lines["not_acquired"].split()[-1] == "1", "the parked job is queued"
    assert lines["reauthorization"].split()[-4:-1] == ["1", "1", "1"], "failed, dead, devices"
