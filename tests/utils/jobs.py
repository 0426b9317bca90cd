"""Submitting a job as a device does, and following it to the emulator's mailbox."""

from __future__ import annotations

import email
import email.policy
import json

import httpx

from tests.utils import eventually


async def submit(panel: httpx.AsyncClient, job: dict, files: dict | None = None) -> str:
    response = await panel.post("/v1/jobs", data={"job": json.dumps(job)}, files=files or {})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


async def final_status(panel: httpx.AsyncClient, job_id: str, seconds: float = 60) -> dict:
    """The job's status once it is `sent` or `failed` (or, after `seconds`, as it stands)."""
    last: dict = {}

    async def settled() -> bool:
        last.clear()
        last.update((await panel.get(f"/v1/jobs/{job_id}")).json())
        return last["status"] in ("sent", "failed")

    try:
        await eventually(settled, within=seconds, every=0.2)
    except AssertionError:
        pass  # the caller's assertion on the status says what it was
    return last


async def received(stack, http: httpx.AsyncClient, job_id: str) -> tuple[dict, email.message.EmailMessage]:
    message_id = f"<{job_id}@fleetmail>"
    messages = (
        await http.get(f"{stack.smtp_control_url}/_emulator/messages", params={"message_id": message_id})
    ).json()
    [entry] = [m for m in messages if m["message_id"] == message_id]
    raw = (await http.get(f"{stack.smtp_control_url}/_emulator/messages/{entry['id']}/raw")).content
    return entry, email.message_from_bytes(raw, policy=email.policy.default)


async def delivered_with_subject(
    stack, http: httpx.AsyncClient, subject: str
) -> list[tuple[dict, email.message.EmailMessage]]:
    """Every message the SMTP emulator accepted with this subject, parsed, oldest first."""
    entries = (
        await http.get(f"{stack.smtp_control_url}/_emulator/messages", params={"subject_prefix": subject})
    ).json()
    found = []
    for entry in entries:
        if entry["subject"] != subject:
            continue
        raw = (await http.get(f"{stack.smtp_control_url}/_emulator/messages/{entry['id']}/raw")).content
        found.append((entry, email.message_from_bytes(raw, policy=email.policy.default)))
    return found


async def dead_letters_of(admin: httpx.AsyncClient, tenant_id: str, limit: int = 50) -> list[dict]:
    """All the tenant's dead letters, newest first, following the listing's pages."""
    found: list[dict] = []
    params: dict[str, int] = {"limit": limit}
    while True:
        page = await admin.get(f"/v1/admin/tenants/{tenant_id}/dead-letters", params=params)
        assert page.status_code == 200, page.text
        found += page.json()["dead_letters"]
        if page.json()["next"] is None:
            return found
        params = {"limit": limit, "before": page.json()["next"]}
