"""A job waits for the sign-in that can help, or fails after the timeout: a login user's
without a grant or with a dead one, and, with OAuth 2.0 on and no administrator token yet,
the administrator's [Acquire]."""

import json
import uuid
from datetime import datetime

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import events, request_tokens, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.alerts import alerts, device_feed, notifier_caught_up
from tests.utils.jobs import final_status, received
from tests.utils.tenants import tenant_with_device, user_signs_in

ADMINISTRATOR_PROMPT = "OAuth 2.0 is on; the administrator has not signed in — Acquire"


async def submit_for(stack, device, user: str) -> str:
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        job = {"function": "scan_to_email", "to": ["x@fabrikam.example"], "login_user": user}
        response = await panel.post("/v1/jobs", data={"job": json.dumps(job)})
        assert response.status_code == 202, response.text
        return response.json()["job_id"]


async def status_of(stack, device, job_id: str) -> dict:
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device) as panel:
        return (await panel.get(f"/v1/jobs/{job_id}")).json()


async def wait_status(stack, device, job_id: str, wanted: str, seconds: float = 30) -> dict:
    """The job's status once it is `wanted` (or, after `seconds`, as it stands)."""
    last: dict = {}

    async def reached() -> bool:
        last.clear()
        last.update(await status_of(stack, device, job_id))
        return last["status"] == wanted

    try:
        await eventually(reached, within=seconds, every=0.2)
    except AssertionError:
        pass  # the caller's assertion on the status says what it was
    return last


async def test_a_parked_job_resumes_after_the_users_sign_in(stack, emulator_http, admin) -> None:
    tenant_id, device = await tenant_with_device(
        admin, auto_delete=False, smtp_port=stack.ports.smtp_starttls
    )
    user = f"walk-up-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    job_id = await submit_for(stack, device, user)
    parked = await wait_status(stack, device, job_id, "parked")
    assert parked["status"] == "parked"
    await user_signs_in(stack, emulator_http, device, user)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device) as panel:
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status.get("detail")
    entry, message = await received(stack, emulator_http, job_id)
    assert entry["auth_user"] == user and message["From"] == user


async def test_a_parked_job_fails_with_a_clear_reason_after_the_timeout(stack, admin) -> None:
    tenant_id, device = await tenant_with_device(
        admin, auto_delete=False, smtp_port=stack.ports.smtp_starttls
    )
    user = f"never-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    job_id = await submit_for(stack, device, user)
    assert (await wait_status(stack, device, job_id, "parked"))["status"] == "parked"
    failed = await wait_status(stack, device, job_id, "failed", seconds=40)
    assert failed["status"] == "failed" and failed["reason_code"] == "authorization_timeout"
    assert f"{user} did not sign in" in failed["detail"]
    assert failed["remedy"] == "Sign in at the device's OAuth screen, then send the job again."
    # ... and only once the deadline the parked event announced had passed.
    job_events = {
        e["kind"]: e for e in await events(stack, "fleetmail.events.v1.mail.>") if e["job_id"] == job_id
    }
    deadline = datetime.fromisoformat(job_events["parked"]["resume_deadline"])
    assert datetime.fromisoformat(job_events["failed"]["occurred_at"]) >= deadline


async def test_a_users_dead_grant_asks_that_user_at_the_device_and_the_job_goes_after_the_sign_in(
    stack, emulator_http, admin
) -> None:
    administrator = await tenant_with_administrator_grant(
        stack, emulator_http, from_policy="login_user_address"
    )
    tenant_id = administrator.tenant_id
    body = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"d-{tenant_id}"})
    ).json()
    device = (body["device_id"], body["secret"])
    user = f"returning-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, device, user)
    # The user's grant dies (revoked at the provider; token-service finds out at the refresh).
    await emulator_http.post(f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": user})
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.USER, address=user)
    [dead] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert dead.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED

    job_id = await submit_for(stack, device, user)
    parked = await wait_status(stack, device, job_id, "parked")
    assert parked["status"] == "parked", parked
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    [mine] = [g for g in grants if g["principal"]["address"] == user]
    assert mine["status"] == "reauthorization_required"

    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:

        async def sign_in_request() -> list[dict]:
            return [a for a in await device_feed(panel) if a["principal_address"] == user]

        [request] = await eventually(sign_in_request, what="the sign-in request on the device")
        assert request["cause"] == "user_reauthorization_required" and not request["for_administrators"]
        assert "Sign in at the device's OAuth screen" in request["remedy"]
        # Nothing for the administrators: their [Acquire] would not help.
        await eventually(lambda: notifier_caught_up(stack), within=60, what="the notifier to read it all")
        assert await alerts(admin, tenant_id) == []
        ever = [a["cause"] for a in await alerts(admin, tenant_id, include_resolved="true")]
        assert "administrator_reauthorization_required" not in ever, ever

        await user_signs_in(stack, emulator_http, device, user)
        status = await final_status(panel, job_id)
        assert status["status"] == "sent", status
        entry, message = await received(stack, emulator_http, job_id)
        assert entry["auth_user"] == user and message["From"] == user
        await eventually(lambda: not_any(sign_in_request), what="the sign-in request to go")


async def not_any(listed) -> bool:
    return not await listed()


async def test_without_an_administrator_token_the_prompt_shows_at_once_and_jobs_go_after_acquire(
    stack, emulator_http, admin
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    address = f"admin@{tenant_id}.example"
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "oauth_enabled": True,
            "administrator_address": address,
            "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
        },
    )
    assert created.status_code == 200, created.text
    devices = []
    for name in ("floor1", "floor2"):
        body = (
            await admin.post(
                f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"{name}-{tenant_id}"}
            )
        ).json()
        devices.append((body["device_id"], body["secret"]))
    panels = [httpx.AsyncClient(base_url=stack.gateway_url, auth=d, timeout=30) for d in devices]
    try:

        async def prompts(panel: httpx.AsyncClient) -> list[dict]:
            return [a for a in await device_feed(panel) if a["title"] == ADMINISTRATOR_PROMPT]

        # At once, before any job, on every device of the tenant.
        for panel in panels:
            [prompt] = await eventually(lambda panel=panel: prompts(panel), what="the prompt on each device")
            assert prompt["cause"] == "administrator_not_signed_in" and prompt["state"] == "open"
            assert f"fleetmail tokens acquire {tenant_id}" in prompt["remedy"]

        # A job sent as the administrator address and an administrator function wait.
        scan = {"function": "scan_to_email", "to": ["x@fabrikam.example"], "subject": "waited"}
        counters = {
            "function": "total_counter_notification",
            "to": ["meters@fabrikam.example"],
            "counters": {"total": 1234},
        }
        jobs = [(0, await submit(panels[0], scan)), (1, await submit(panels[1], counters))]
        for n, job_id in jobs:
            parked = await wait_status(stack, devices[n], job_id, "parked")
            assert parked["status"] == "parked", parked

        started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
        await emulator_http.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": address},
        )
        for n, job_id in jobs:
            status = await final_status(panels[n], job_id)
            assert status["status"] == "sent", status
            entry, message = await received(stack, emulator_http, job_id)
            assert entry["auth_user"] == address and message["From"] == address
        for panel in panels:
            await eventually(lambda panel=panel: not_any(lambda: prompts(panel)), what="the prompt to go")
    finally:
        for panel in panels:
            await panel.aclose()


async def submit(panel: httpx.AsyncClient, job: dict) -> str:
    response = await panel.post("/v1/jobs", data={"job": json.dumps(job)})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


async def test_a_job_for_a_login_user_outside_the_tenant_is_refused_and_nobody_is_asked(stack, admin) -> None:
    """The waiting user is asked to sign in by e-mail through the operator's relay: a login
    user outside the tenant's mail domains never gets that far."""
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        job = {
            "function": "scan_to_email",
            "to": ["x@fabrikam.example"],
            "login_user": "victim@anything.example",
        }
        response = await panel.post("/v1/jobs", data={"job": json.dumps(job)})
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "mail domains" in response.json()["detail"]
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs")).json() == []
