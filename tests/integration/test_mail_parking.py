"""A job for a login user without a grant waits for the sign-in, or fails after the timeout."""

import json
import uuid
from datetime import datetime

import httpx
from fleetmail_devkit.probes import events

from tests.utils import eventually
from tests.utils.jobs import final_status, received
from tests.utils.tenants import tenant_with_device, user_signs_in


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
