"""The console's Devices and Jobs routes over HTTP: who may change what (roles, CSRF), a
device's secret given once, and the job detail the pages and the API share."""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from datetime import UTC, datetime

import httpx
import nats
from fleetmail_contracts import streams
from fleetmail_contracts.dead_letters import DeadLetter, dead_letter_subject

from tests.utils.console import console_http, csrf_token, new_api_key, sign_in
from tests.utils.tenants import new_tenant, tenant_with_device


def writes(tenant_id: str, device_id: str) -> list[tuple[str, dict[str, str]]]:
    base = f"/console/tenants/{tenant_id}"
    return [
        (f"{base}/devices", {"device_id": "forged"}),
        (f"{base}/devices/{device_id}/secret", {}),
        (f"{base}/devices/{device_id}/enabled", {"enabled": "off"}),
        (f"{base}/devices/{device_id}/settings", {"name": "forged"}),
        (f"{base}/dead-letters/resend", {}),
        (f"{base}/dead-letters/1/resend", {}),
    ]


async def works(stack, device: tuple[str, str]) -> bool:
    """The device's secret signs it in (a job it does not have is 404, not 401)."""
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        answer = await panel.get("/v1/jobs/no-such-job")
    assert answer.status_code in (401, 404), answer.text
    return answer.status_code == 404


async def test_every_change_without_the_csrf_token_is_refused(stack, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    async with console_http(stack) as http:
        await sign_in(http, stack.admin_api_key())
        for path, form in writes(tenant_id, device[0]):
            refused = await http.post(path, data=form)
            assert refused.status_code == 403 and "CSRF token" in refused.text, path
    assert await works(stack, device)
    [listed] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/devices")).json()
    assert (listed["disabled"], listed["name"]) == (False, "")


async def test_an_operator_changes_nothing_and_a_fleet_administrator_sees_only_its_tenants(
    stack, admin
) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    operator = await new_api_key(admin, "operator", [tenant_id])
    async with console_http(stack) as http:
        await sign_in(http, operator["key"])
        page = await http.get(f"/console/tenants/{tenant_id}/devices/{device[0]}")
        assert page.status_code == 200 and device[0] in page.text and "Rotate" not in page.text
        token = csrf_token(page.text)
        for path, form in writes(tenant_id, device[0]):
            refused = await http.post(path, data={**form, "csrf_token": token})
            assert refused.status_code == 403 and "read-only" in refused.text, path
    assert await works(stack, device)

    other, _ = await new_tenant(admin)
    fleet_admin = await new_api_key(admin, "fleet_admin", [other])
    async with console_http(stack) as http:
        await sign_in(http, fleet_admin["key"])
        token = csrf_token((await http.get(f"/console/tenants/{other}/devices")).text)
        base = f"/console/tenants/{tenant_id}"
        for path in (
            "devices",
            f"devices/{device[0]}",
            "jobs",
            "jobs/rows",
            "dead-letters",
            "dead-letters/resend",
        ):
            refused = await http.get(f"{base}/{path}")
            assert refused.status_code == 403 and device[0] not in refused.text, path
        for path, form in writes(tenant_id, device[0]):
            refused = await http.post(path, data={**form, "csrf_token": token})
            assert refused.status_code == 403, path
    assert await works(stack, device)


async def test_a_secret_is_given_once_and_an_existing_id_is_not_registered_again(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    async with console_http(stack) as http:
        await sign_in(http, stack.admin_api_key())
        devices = f"/console/tenants/{tenant_id}/devices"
        token = csrf_token((await http.get(devices)).text)
        registered = await http.post(
            devices, data={"device_id": "mfp-1", "name": "Lobby", "csrf_token": token}
        )
        assert registered.status_code == 200 and registered.headers["cache-control"] == "no-store"
        secret = registered.text.split('data-testid="device-secret">')[1].split("<")[0]
        assert await works(stack, ("mfp-1", secret))

        again = await http.post(devices, data={"device_id": "mfp-1", "csrf_token": token})
        assert again.status_code == 409 and "registered already" in again.text and secret not in again.text
        assert await works(stack, ("mfp-1", secret)), "the first secret still signs the device in"
        for page in (devices, f"{devices}/mfp-1"):
            shown = await http.get(page)
            assert shown.status_code == 200 and "mfp-1" in shown.text and secret not in shown.text

        bad = await http.post(devices, data={"device_id": "no spaces", "csrf_token": token})
        assert bad.status_code == 422 and "device_id" in bad.text
        bad = await http.post(
            devices, data={"device_id": "mfp-2", "allow_cidrs": "0.0.0.0/0", "csrf_token": token}
        )
        assert bad.status_code == 422 and "mfp-2" not in (await http.get(devices)).text

        shown = await http.get(f"{devices}/mfp-1")
        rotate = {
            "csrf_token": token,
            "secret_version": re.search(r'name="secret_version" value="(\w+)"', shown.text)[1],
        }
        rotated = await http.post(f"{devices}/mfp-1/secret", data=rotate)
        new_secret = rotated.text.split('data-testid="device-secret">')[1].split("<")[0]
        assert new_secret != secret and await works(stack, ("mfp-1", new_secret))
        assert not await works(stack, ("mfp-1", secret))
        # The same form sent again (a reload of the answer): nothing rotated, the new secret kept.
        again = await http.post(f"{devices}/mfp-1/secret", data=rotate)
        assert again.status_code == 409 and "nothing was rotated" in again.text, again.text
        assert await works(stack, ("mfp-1", new_secret))

        # A range of its own: no device of another test holds it (ranges are unique fleet-wide).
        address = f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
        settings = {"name": "Lobby", "allow_cidrs": address, "smtp_function": "status_notification"}
        saved = await http.post(f"{devices}/mfp-1/settings", data={**settings, "csrf_token": token})
        assert saved.status_code == 303, saved.text
        [stored] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/devices")).json()
        assert (stored["smtp_function"], stored["allow_cidrs"]) == ("status_notification", [f"{address}/32"])
        refused = await http.post(
            f"{devices}/mfp-1/settings", data={"machine_address": "someone@else.example", "csrf_token": token}
        )
        assert refused.status_code == 422 and "administrator" in refused.text
        disabled = await http.post(f"{devices}/mfp-1/enabled", data={"enabled": "off", "csrf_token": token})
        assert disabled.status_code == 303
        assert not await works(stack, ("mfp-1", new_secret))
        found = await http.get(devices, params={"search": "lobby"})
        assert 'data-testid="device-row"' in found.text and "Disabled" in found.text
        assert "mfp-1" not in (await http.get(devices, params={"search": "kitchen"})).text


async def test_a_job_is_shown_with_its_timeline_to_its_own_tenant_only(stack, admin) -> None:
    tenant_id, device = await tenant_with_device(admin, auto_delete=False)
    other, _ = await tenant_with_device(admin, auto_delete=False)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        job = {"to": ["someone@fabrikam.example"], "subject": "timeline"}
        accepted = (await panel.post("/v1/jobs", data={"job": json.dumps(job)})).json()
    detail = await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs/{accepted['delivery_id']}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["timeline"][0]["kind"] == "received" and detail.json()["device_id"] == device[0]
    elsewhere = await admin.get(f"/v1/admin/tenants/{other}/jobs/{accepted['delivery_id']}")
    assert elsewhere.status_code == 404 and elsewhere.json()["type"].endswith("/job-not-found")

    async with console_http(stack) as http:
        await sign_in(http, stack.admin_api_key())
        jobs = f"/console/tenants/{tenant_id}/jobs"
        listed = await http.get(jobs, params={"device_id": device[0], "since": "2000-01-01T00:00"})
        assert listed.status_code == 200 and accepted["job_id"] in listed.text
        assert accepted["job_id"] not in (await http.get(jobs, params={"device_id": "another"})).text
        assert accepted["job_id"] not in (await http.get(jobs, params={"until": "2000-01-01T00:00"})).text
        assert (await http.get(jobs, params={"since": "yesterday"})).status_code == 422
        # A time that has no UTC is a refusal that says so, in the console and the API alike.
        for field, at in (("since", "0001-01-01T00:00:00+05:00"), ("until", "9999-12-31T23:59:59-05:00")):
            shown = await http.get(jobs, params={field: at})
            assert shown.status_code == 422 and "out of the range" in shown.text, shown.text
            answered = await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs", params={field: at})
            assert answered.status_code == 422 and "out of the range" in answered.text, answered.text
        page = await http.get(f"{jobs}/{accepted['delivery_id']}")
        assert page.status_code == 200 and 'data-kind="received"' in page.text
        assert (await http.get(f"/console/tenants/{other}/jobs/{accepted['delivery_id']}")).status_code == 404


async def dead_letter_of(stack, tenant_id: str) -> tuple[int, str]:
    """A dead letter of the tenant, straight into the stream, whose document is no longer
    stored: it cannot be sent again (and nothing is republished)."""
    job_id = f"gone-{uuid.uuid4().hex[:8]}"
    job = {
        "tenant_id": tenant_id,
        "job_id": job_id,
        "attachments": [{"filename": "scan.pdf", "object_name": job_id}],
    }
    letter = DeadLetter(
        dead_letter_id=uuid.uuid4().hex,
        original_subject="fleetmail.jobs.v1.scan_to_email",
        payload_b64=base64.b64encode(json.dumps(job).encode()).decode(),
        reason_code="retries_exhausted",
        detail="ran out of retries",
        deliveries=8,
        failed_at=datetime.now(UTC),
        service="test",
    ).model_dump_json()
    client = await nats.connect(stack.nats_url)
    try:
        published = await client.jetstream().publish(
            dead_letter_subject("test"), letter.encode(), stream=streams.DLQ_STREAM
        )
        return published.seq, job_id
    finally:
        await client.close()


async def test_resending_all_that_match_asks_first_then_says_what_was_skipped_and_why(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    sequence, job_id = await dead_letter_of(stack, tenant_id)

    async with console_http(stack) as http:
        await sign_in(http, stack.admin_api_key())
        dead_letters = f"/console/tenants/{tenant_id}/dead-letters"
        listed = await http.get(dead_letters)
        assert f'data-sequence="{sequence}"' in listed.text and "retries_exhausted" in listed.text
        confirm = await http.get(f"{dead_letters}/resend", params={"reason": "retries_exhausted"})
        assert confirm.status_code == 200 and "retries_exhausted" in confirm.text
        assert (await http.get(f"{dead_letters}/resend", params={"since": "soon"})).status_code == 422
        token = csrf_token(confirm.text)
        report = await http.post(
            f"{dead_letters}/resend", data={"reason": "retries_exhausted", "csrf_token": token}
        )
        assert report.status_code == 200, report.text
        assert (
            'data-testid="resent-count">0<' in report.text and 'data-testid="skipped-count">1<' in report.text
        )
        assert "documents_gone" in report.text and "scan.pdf" in report.text and job_id in report.text
        other_reason = await http.post(
            f"{dead_letters}/resend", data={"reason": "mailbox_full", "csrf_token": token}
        )
        assert 'data-testid="skipped-count">0<' in other_reason.text and job_id not in other_reason.text

        one = await http.post(f"{dead_letters}/{sequence}/resend", data={"csrf_token": token})
        assert one.status_code == 410 and "scan.pdf" in one.text and "submit the job again" in one.text


async def test_a_device_id_of_dots_alone_is_refused_and_the_overview_reads_its_query_as_the_api(
    stack, admin
) -> None:
    """`.` and `..` would be no device page's path; the overview's query string is read by the
    API's own rules (one parser), so both refuse the same values."""
    tenant_id, _ = await new_tenant(admin)
    for device_id in (".", ".."):
        refused = await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id})
        assert refused.status_code == 422, refused.text
    async with console_http(stack) as http:
        await sign_in(http, stack.admin_api_key())
        for params in ({"sort": "colour"}, {"order": "sideways"}, {"q": "x" * 101}, {"page": "0"}):
            shown = await http.get("/console/", params=params)
            assert shown.status_code == 422, (params, shown.text)
            answered = await admin.get("/v1/admin/overview", params=params)
            assert answered.status_code == 422, (params, answered.text)
