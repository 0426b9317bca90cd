"""Administrators' keys and roles, device management, job search, and tenant isolation."""

import asyncio
import json
import uuid

import httpx
from fleetmail_devkit.probes import tenant_with_administrator_grant
from pymongo import AsyncMongoClient

from tests.utils import eventually
from tests.utils.jobs import dead_letters_of, final_status, submit


async def new_tenant(admin: httpx.AsyncClient) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": f"admin@{tenant_id}.example",
        },
    )
    assert created.status_code == 200
    return tenant_id


def as_key(stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def test_fleet_admin_and_operator_keys_reach_only_what_their_role_allows(stack, admin) -> None:
    mine, theirs = await new_tenant(admin), await new_tenant(admin)
    created = await admin.post(
        "/v1/admin/api-keys", json={"name": "Contoso IT", "role": "fleet_admin", "tenant_ids": [mine]}
    )
    assert created.status_code == 201, created.text
    fleet_key = created.json()["key"]
    operator_key = (await admin.post("/v1/admin/api-keys", json={"name": "NOC", "role": "operator"})).json()[
        "key"
    ]

    async with as_key(stack, fleet_key) as fleet, as_key(stack, operator_key) as operator:
        assert (await fleet.get(f"/v1/admin/tenants/{mine}")).status_code == 200
        settings = (await fleet.get(f"/v1/admin/tenants/{mine}")).json() | {"auto_delete": True}
        assert (await fleet.put(f"/v1/admin/tenants/{mine}", json=settings)).status_code == 200
        refused = await fleet.get(f"/v1/admin/tenants/{theirs}")
        assert refused.status_code == 403 and "no access" in refused.json()["detail"]
        assert (
            await fleet.post("/v1/admin/api-keys", json={"name": "x", "role": "operator"})
        ).status_code == 403

        assert (await operator.get(f"/v1/admin/tenants/{theirs}")).status_code == 200
        assert (await operator.get(f"/v1/admin/tenants/{mine}/tokens")).status_code == 200
        read_only = await operator.put(f"/v1/admin/tenants/{mine}", json=settings)
        assert read_only.status_code == 403 and "read-only" in read_only.json()["detail"]

    listed = (await admin.get("/v1/admin/api-keys")).json()
    assert {k["name"] for k in listed} >= {"Contoso IT", "NOC"} and all(k["key"] is None for k in listed)
    key_id = created.json()["key_id"]
    assert (await admin.delete(f"/v1/admin/api-keys/{key_id}")).json() == {"deleted": True}
    async with as_key(stack, fleet_key) as revoked, as_key(stack, "fmk_nope_nope") as forged:
        assert (await revoked.get(f"/v1/admin/tenants/{mine}")).status_code == 401
        assert (await forged.get(f"/v1/admin/tenants/{mine}")).status_code == 401

    mongo: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    try:
        stored = [d async for d in mongo["fleetmail_gateway"]["api_keys"].find({})]
    finally:
        await mongo.close()
    assert stored and not any(operator_key.split("_", 2)[2] in repr(d) for d in stored)


async def test_device_secret_rotation_disable_and_listing(stack, admin) -> None:
    tenant_id = await new_tenant(admin)
    device_id = f"mfp-{uuid.uuid4().hex[:6]}"
    old = (await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})).json()[
        "secret"
    ]

    async def can_submit(secret: str) -> int:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, secret), timeout=30
        ) as panel:
            response = await panel.post("/v1/jobs", data={"job": json.dumps({"to": ["x@fabrikam.example"]})})
            return response.status_code

    assert await can_submit(old) == 202
    new = (await admin.post(f"/v1/admin/tenants/{tenant_id}/devices/{device_id}/secret")).json()["secret"]
    assert await can_submit(old) == 401 and await can_submit(new) == 202

    disabled = await admin.patch(
        f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"disabled": True}
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert await can_submit(new) == 401
    await admin.patch(f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"disabled": False})
    assert await can_submit(new) == 202

    listed = await admin.get(f"/v1/admin/tenants/{tenant_id}/devices")
    assert [d["device_id"] for d in listed.json()] == [device_id] and "secret_hash" not in listed.text


async def test_internet_fax_uses_the_device_machine_address_which_must_be_the_administrator(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id, device_id = principal.tenant_id, f"fax-{uuid.uuid4().hex[:6]}"
    secret = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
    ).json()["secret"]
    wrong = await admin.patch(
        f"/v1/admin/tenants/{tenant_id}/devices/{device_id}",
        json={"machine_address": "fax@elsewhere.example"},
    )
    assert wrong.status_code == 422 and "administrator address" in wrong.json()["detail"]
    right = await admin.patch(
        f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"machine_address": principal.address}
    )
    assert right.status_code == 200 and right.json()["machine_address"] == principal.address
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:
        # No machine address in the job: the device's own is used.
        job_id = await submit(panel, {"function": "internet_fax_tx", "to": ["fax@fabrikam.example"]})
        status = await final_status(panel, job_id)
    assert status["status"] == "sent" and status["sender"] == principal.address, status


async def test_job_search_and_tenant_isolation(stack, admin) -> None:
    mine, theirs = await new_tenant(admin), await new_tenant(admin)
    panels = {}
    for tenant_id in (mine, theirs):
        device_id = f"d-{uuid.uuid4().hex[:6]}"
        secret = (
            await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
        ).json()["secret"]
        panels[tenant_id] = (device_id, secret)
    jobs = []
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=panels[mine], timeout=30) as panel:
        for n in range(3):
            jobs.append(await submit(panel, {"to": ["x@fabrikam.example"], "subject": f"n{n}"}))
            await asyncio.sleep(0.01)
    newest = (await admin.get(f"/v1/admin/tenants/{mine}/jobs", params={"limit": 2})).json()
    assert [j["job_id"] for j in newest] == jobs[:0:-1]
    older = (
        await admin.get(f"/v1/admin/tenants/{mine}/jobs", params={"before": newest[-1]["submitted_at"]})
    ).json()
    assert [j["job_id"] for j in older] == jobs[:1]
    by_device = (await admin.get(f"/v1/admin/tenants/{mine}/jobs", params={"device_id": "nobody"})).json()
    assert by_device == []
    assert (await admin.get(f"/v1/admin/tenants/{theirs}/jobs")).json() == []

    # A device of another tenant sees nothing of these jobs; device ids are each tenant's own:
    # the same id in the other tenant is another device, and changing it leaves this one be.
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=panels[theirs], timeout=30) as other:
        assert (await other.get(f"/v1/jobs/{jobs[0]}")).status_code == 404
    same_id = await admin.post(f"/v1/admin/tenants/{theirs}/devices", json={"device_id": panels[mine][0]})
    assert same_id.status_code == 201 and same_id.json()["tenant_id"] == theirs
    disabled = await admin.patch(
        f"/v1/admin/tenants/{theirs}/devices/{panels[mine][0]}", json={"disabled": True}
    )
    assert disabled.status_code == 200
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=panels[mine], timeout=30) as panel:
        assert (await panel.get(f"/v1/jobs/{jobs[0]}")).status_code == 200


async def test_a_runaway_device_is_rate_limited_with_retry_after(stack, admin) -> None:
    tenant_id = await new_tenant(admin)
    device_id = f"loop-{uuid.uuid4().hex[:6]}"
    secret = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
    ).json()["secret"]
    # The stack's burst is 40 and its rate 2 jobs/s: the flood outruns the rate on a loaded
    # machine too (150 at once would have to take a minute to be all accepted).
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:
        responses = await asyncio.gather(
            *(
                panel.post("/v1/jobs", data={"job": json.dumps({"to": ["x@fabrikam.example"]})})
                for _ in range(150)
            )
        )
    codes = [r.status_code for r in responses]
    assert codes.count(202) >= 40 and 429 in codes, codes
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1 and limited.json()["type"].endswith("rate-limited")


async def test_a_dead_job_is_listed_with_its_reason_and_resent_once_the_cause_is_fixed(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    secret = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"dl-{tenant_id}"})
    ).json()["secret"]
    mailbox = f"{stack.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": True})
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(f"dl-{tenant_id}", secret), timeout=60
    ) as panel:
        job_id = await submit(panel, {"to": ["x@fabrikam.example"], "subject": "dead then alive"})
        assert (await final_status(panel, job_id))["status"] == "failed"

        [letter] = await dead_letters_of(admin, tenant_id)
        assert letter["job_id"] == job_id and letter["reason_code"] == "smtp_auth_disabled"
        other = await new_tenant(admin)
        assert await dead_letters_of(admin, other) == []
        foreign = await admin.post(f"/v1/admin/tenants/{other}/dead-letters/{letter['sequence']}/resend")
        assert foreign.status_code == 404

        # The administrator ticks "Authenticated SMTP" for the mailbox, then resends.
        await emulator_http.post(mailbox, json={"address": principal.address, "smtp_auth_disabled": False})
        resent = await admin.post(f"/v1/admin/tenants/{tenant_id}/dead-letters/{letter['sequence']}/resend")
        assert resent.status_code == 202 and resent.json()["job_id"] == job_id
        again = await admin.post(f"/v1/admin/tenants/{tenant_id}/dead-letters/{letter['sequence']}/resend")
        assert again.status_code == 202  # a double click: JetStream drops the duplicate
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    messages = (await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages")).json()
    assert [m["message_id"] for m in messages].count(f"<{job_id}@fleetmail>") == 1


async def test_bad_input_is_refused_at_the_door_and_nothing_is_kept(stack, admin) -> None:
    tenant_id = await new_tenant(admin)
    device_id = f"bad-{uuid.uuid4().hex[:6]}"
    secret = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
    ).json()["secret"]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=30) as panel:
        bad = await panel.post("/v1/jobs", data={"job": json.dumps({"to": ["not-an-address"]})})
        assert bad.status_code == 422 and bad.json()["type"].endswith("invalid-address")
        program = await panel.post(
            "/v1/jobs",
            data={"job": json.dumps({"to": ["x@fabrikam.example"]})},
            files={"files": ("setup.exe", b"MZ\x90\x00", "application/x-msdownload")},
        )
        assert program.status_code == 415 and "not accepted" in program.json()["detail"]
        unknown = await panel.post(
            "/v1/jobs", data={"job": json.dumps({"function": "teleport", "to": ["x@y.example"]})}
        )
        assert unknown.status_code == 422
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs")).json() == []


async def test_a_device_cannot_send_as_another_tenant(stack, emulator_http, admin) -> None:
    mine = await tenant_with_administrator_grant(stack, emulator_http)
    theirs = await tenant_with_administrator_grant(stack, emulator_http)
    settings = (await admin.get(f"/v1/admin/tenants/{mine.tenant_id}")).json() | {"from_policy": "allow"}
    await admin.put(f"/v1/admin/tenants/{mine.tenant_id}", json=settings)
    device_id = f"spoof-{uuid.uuid4().hex[:6]}"
    secret = (
        await admin.post(f"/v1/admin/tenants/{mine.tenant_id}/devices", json={"device_id": device_id})
    ).json()["secret"]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:
        job = {"to": ["x@fabrikam.example"], "login_user": mine.address, "requested_from": theirs.address}
        status = await final_status(panel, await submit(panel, job))
    assert status["status"] == "failed" and status["reason_code"] == "sender_not_allowed", status


async def test_a_device_cannot_sign_in_for_another_tenant_or_without_credentials(stack, admin) -> None:
    mine, theirs = await new_tenant(admin), await new_tenant(admin)
    devices = {}
    for tenant_id in (mine, theirs):
        created = await admin.post(
            f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"d-{tenant_id}"}
        )
        devices[tenant_id] = (created.json()["device_id"], created.json()["secret"])
    user = f"user@{mine}.example"
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as anonymous:
        refused = await anonymous.post("/v1/device/sign-ins", json={"user": user})
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    async with (
        httpx.AsyncClient(base_url=stack.gateway_url, auth=devices[mine], timeout=30) as panel,
        httpx.AsyncClient(base_url=stack.gateway_url, auth=devices[theirs], timeout=30) as other,
    ):
        # A sign-in cannot name a tenant: it is always for the device's own.
        named = await other.post("/v1/device/sign-ins", json={"user": user, "tenant_id": mine})
        assert named.status_code == 422 and named.headers["content-type"] == "application/problem+json"
        started = await panel.post("/v1/device/sign-ins", json={"user": user})
        assert started.status_code == 201, started.text
        acquisition_id = started.json()["acquisition_id"]
        own = (await panel.get(f"/v1/device/sign-ins/{acquisition_id}")).json()
        assert own["state"] == "pending" and own["principal"] == {
            "tenant_id": mine,
            "kind": "user",
            "address": user,
        }
        # The other tenant's device cannot follow it (nor learn whose it is) ...
        seen = (await other.get(f"/v1/device/sign-ins/{acquisition_id}")).json()
        assert seen["state"] == "failed" and seen["principal"] is None, seen
        # ... nor start one for the other tenant's people (their mail domain is not its own).
        foreign = await other.post("/v1/device/sign-ins", json={"user": user})
        assert foreign.status_code == 403 and foreign.json()["type"].endswith("/address-outside-tenant")
        # A device's credentials are not an administrator's.
        assert (await other.get(f"/v1/admin/tenants/{mine}")).status_code == 401
        bad = await panel.post("/v1/device/events", json={"kind": "user_logged_out"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


async def test_a_new_administrator_address_asks_for_acquire_and_the_old_mailbox_is_not_used(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id, old = principal.tenant_id, principal.address
    new = f"it@{tenant_id}.example"
    device_id = f"mfp-{uuid.uuid4().hex[:6]}"
    secret = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
    ).json()["secret"]
    fax = await admin.patch(
        f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"machine_address": old}
    )
    assert fax.status_code == 200 and fax.json()["attention"] == []
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:
        before = await final_status(panel, await submit(panel, {"to": ["meter@fabrikam.example"]}))
        assert before["status"] == "sent" and before["sender"] == old, before  # token-service holds its token

        settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
        saved = await admin.put(
            f"/v1/admin/tenants/{tenant_id}", json={**settings, "administrator_address": new}
        )
        assert saved.status_code == 200, saved.text
        why = f"the administrator address changed from {old} to {new}"

        async def marked() -> dict | None:
            [row] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
            return row if row["status"] == "reauthorization_required" else None

        row = await eventually(marked, within=15, what="the administrator token to need a new sign-in")
        assert why in row["status_detail"] and "Acquire" in row["status_detail"]

        async def alerted() -> list[dict]:
            found = (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json()
            return [a for a in found if a["cause"] == "administrator_reauthorization_required"]

        [alert] = await eventually(alerted, within=60, what="the administrator's alert")
        assert why[4:] in alert["detail"] and "provider refused" not in alert["detail"], alert

        [device] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/devices")).json()
        assert (
            len(device["attention"]) == 1 and old in device["attention"][0] and new in device["attention"][0]
        )

        job_id = await submit(panel, {"to": ["meter@fabrikam.example"]})

        async def acted_on() -> dict | None:
            status = (await panel.get(f"/v1/jobs/{job_id}")).json()
            return status if status["status"] not in ("queued", "accepted", "deferred") else None

        after = await eventually(acted_on, within=30, what="mail-service to act on the job")
    assert after["status"] != "sent" and after.get("sender") != old, after
    mailed = (
        await emulator_http.get(
            f"{stack.smtp_control_url}/_emulator/messages", params={"message_id": f"<{job_id}@fleetmail>"}
        )
    ).json()
    assert mailed == []


async def test_a_new_provider_asks_the_administrator_to_acquire_again(stack, emulator_http, admin) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    settings = (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}")).json()
    moved = await admin.put(
        f"/v1/admin/tenants/{principal.tenant_id}", json={**settings, "provider": "google"}
    )
    assert moved.status_code == 200, moved.text

    async def marked() -> dict | None:
        [row] = (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}/tokens")).json()["grants"]
        return row if row["status"] == "reauthorization_required" else None

    row = await eventually(marked, within=15, what="the administrator token to need a new sign-in")
    assert "provider changed from Microsoft to Google" in row["status_detail"]
