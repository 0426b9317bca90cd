"""What a person finds in the message each function delivers, read at the SMTP emulator:
the administrator functions' data in the plain text and the HTML, the counters' CSV file,
the forwarded fax and its sender, TSI routing by the tenant's table, the Internet Fax
sender under every From policy, and the From a job may carry under [Allow]. Submitted through the device API and the SMTP listener."""

from __future__ import annotations

import asyncio
import csv
import email.message
import io
import json
import uuid

import aiosmtplib
import httpx
import pytest
from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant

from tests.utils.jobs import final_status, received
from tests.utils.smtp import context
from tests.utils.tenants import user_signs_in

FAX = ("fax.tif", b"II*\x00" + bytes(64), "image/tiff")


@pytest.fixture(scope="module")
async def fleet(stack, emulator_http):
    """One tenant with an administrator grant and one device, shared by the module."""
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    device_id, secret = await register_device(stack, principal.tenant_id)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(device_id, secret), timeout=60, trust_env=False
    ) as panel:
        yield principal, device_id, panel


async def post_job(panel: httpx.AsyncClient, job: dict, *files: tuple[str, bytes, str]) -> httpx.Response:
    """The device's submission, answered as it is (a refusal included)."""
    return await panel.post("/v1/jobs", data={"job": json.dumps(job)}, files=[("files", f) for f in files])


async def delivered(stack, emulator_http, panel, job: dict, *files) -> email.message.EmailMessage:
    """Submit the job, wait until it is sent, and read the message the emulator received."""
    response = await post_job(panel, job, *files)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    _, message = await received(stack, emulator_http, job_id)
    return message


def text_and_html(message: email.message.EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    page = message.get_body(preferencelist=("html",))
    assert plain is not None and page is not None
    return plain.get_content(), page.get_content()


def facts(plain: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in plain.splitlines() if ": " in line)


async def test_a_total_counter_notification_lists_every_counter_and_attaches_a_csv(
    stack, emulator_http, fleet
) -> None:
    _, device_id, panel = fleet
    counters = {"Total": 120345, "Copy Black": 80000, "Print Full Color": 40000, "Scan": 345}
    message = await delivered(
        stack,
        emulator_http,
        panel,
        {
            "function": "total_counter_notification",
            "to": ["billing@fabrikam.example"],
            "counters": counters,
            "counted_at": "2026-11-27T23:59:00Z",
        },
    )
    plain, page = text_and_html(message)
    rows = plain[plain.index("Counter ") :].splitlines()[2:]
    assert {r.rsplit(None, 1)[0].strip(): int(r.rsplit(None, 1)[1]) for r in rows} == counters
    for name, value in counters.items():
        assert f"<tr><td>{name}</td><td>{value}</td></tr>" in page
    assert facts(plain)["Counted at"] == "2026-11-27T23:59:00Z" and f"<td>{device_id}</td>" in page
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"counters-{device_id}-2026-11-27.csv"
    table = list(csv.DictReader(io.StringIO(attachment.get_content())))
    assert {row["counter"]: int(row["value"]) for row in table} == counters


async def test_a_failed_tx_result_report_says_what_a_person_needs(stack, emulator_http, fleet) -> None:
    _, _, panel = fleet
    message = await delivered(
        stack,
        emulator_http,
        panel,
        {
            "function": "tx_result_report",
            "to": ["ops@fabrikam.example"],
            "destination": "+49 30 5555 0101",
            "result": "Failed: no answer",
            "pages": 4,
            "transmitted_at": "2026-11-28T10:00:05+01:00",
            "error_code": "#0017",
        },
    )
    plain, page = text_and_html(message)
    expected = {
        "Destination": "+49 30 5555 0101",
        "Result": "Failed: no answer",
        "Pages": "4",
        "Time": "2026-11-28T09:00:05Z",
        "Error code": "#0017",
    }
    assert facts(plain).items() >= expected.items()
    for label, value in expected.items():
        assert f'<th scope="row">{label}</th><td>{value}</td>' in page


async def test_a_status_notification_says_the_status_and_its_time(stack, emulator_http, fleet) -> None:
    _, _, panel = fleet
    message = await delivered(
        stack,
        emulator_http,
        panel,
        {
            "function": "status_notification",
            "to": ["ops@fabrikam.example"],
            "status": "Paper jam <tray 2>",
            "status_at": "2026-11-28T08:15:00Z",
        },
    )
    plain, page = text_and_html(message)
    assert facts(plain)["Status"] == "Paper jam <tray 2>" and facts(plain)["Time"] == "2026-11-28T08:15:00Z"
    assert "<td>Paper jam &lt;tray 2&gt;</td>" in page and "<tray 2>" not in page
    assert "<td>2026-11-28T08:15:00Z</td>" in page


async def test_an_email_notification_says_the_event(stack, emulator_http, fleet) -> None:
    _, _, panel = fleet
    message = await delivered(
        stack,
        emulator_http,
        panel,
        {"function": "email_notification", "to": ["ops@fabrikam.example"], "event": "Toner low (black)"},
    )
    plain, page = text_and_html(message)
    assert facts(plain)["Event"] == "Toner low (black)" and "<td>Toner low (black)</td>" in page


async def test_a_forwarded_fax_names_its_sender_and_carries_the_fax(stack, emulator_http, fleet) -> None:
    _, _, panel = fleet
    job = {"function": "forward_tx", "to": ["ops@fabrikam.example"], "sender_fax_number": "+49 30 1234"}
    refused = await post_job(panel, job)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/fax-document-required"), refused.json()
    message = await delivered(stack, emulator_http, panel, job, FAX)
    plain, page = text_and_html(message)
    assert message["Subject"] == "Forwarded fax from +49 30 1234"
    assert facts(plain)["Sender's fax number"] == "+49 30 1234" and "<td>+49 30 1234</td>" in page
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "image/tiff" and attachment.get_content() == FAX[1]


async def test_a_user_box_mail_names_the_box(stack, emulator_http, fleet) -> None:
    _, _, panel = fleet
    job = {
        "function": "user_box_email",
        "to": ["boss@fabrikam.example"],
        "user_box": "Sales",
        "user_box_number": "42",
    }
    plain, page = text_and_html(
        await delivered(stack, emulator_http, panel, job, ("doc.pdf", b"%PDF-1.4", "application/pdf"))
    )
    assert facts(plain)["User box"] == "Sales" and facts(plain)["Box number"] == "42"
    assert "<td>Sales</td>" in page and "<td>42</td>" in page


async def test_an_application_mail_names_the_application(stack, emulator_http, fleet) -> None:
    _, _, panel = fleet
    job = {"function": "application_email", "to": ["boss@fabrikam.example"], "application": "Scan Hub"}
    plain, page = text_and_html(await delivered(stack, emulator_http, panel, job))
    assert facts(plain)["Application"] == "Scan Hub" and "<td>Scan Hub</td>" in page


async def test_the_tsi_routing_table_is_kept_and_edited_through_the_admin_api(admin, fleet) -> None:
    principal, _, _ = fleet
    base = f"/v1/admin/tenants/{principal.tenant_id}/tsi-routing"
    assert (await admin.get(base)).json() == {"routes": [], "default": []}
    table = {
        "routes": [{"tsi": "ACME Sales", "recipients": ["sales@fabrikam.example"]}],
        "default": ["faxes@fabrikam.example"],
    }
    saved = await admin.put(base, json=table)
    assert saved.status_code == 200 and saved.json() == table
    added = await admin.put(f"{base}/routes/+49 30 1234", json={"recipients": ["berlin@fabrikam.example"]})
    assert added.status_code == 200, added.text
    replaced = await admin.put(f"{base}/routes/acme  sales", json={"recipients": ["new@fabrikam.example"]})
    assert [r["tsi"] for r in replaced.json()["routes"]] == ["+49 30 1234", "acme  sales"]
    removed = await admin.delete(f"{base}/routes/+49 30 1234")
    assert removed.json()["routes"] == [{"tsi": "acme  sales", "recipients": ["new@fabrikam.example"]}]
    assert (await admin.get(base)).json() == removed.json()
    missing = await admin.delete(f"{base}/routes/+49 30 1234")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/tsi-route-not-found")
    bad = await admin.put(f"{base}/routes/X", json={"recipients": ["not an address"]})
    assert bad.status_code == 422 and "not an e-mail address" in bad.json()["detail"]
    unknown = await admin.get("/v1/admin/tenants/no-such-tenant/tsi-routing")
    assert unknown.status_code == 404


async def test_a_tsi_routing_job_goes_where_the_table_says(stack, emulator_http, admin, fleet) -> None:
    principal, _, panel = fleet
    base = f"/v1/admin/tenants/{principal.tenant_id}/tsi-routing"
    table = {
        "routes": [{"tsi": "ACME Sales", "recipients": ["sales@fabrikam.example", "lead@fabrikam.example"]}],
        "default": ["faxes@fabrikam.example"],
    }
    assert (await admin.put(base, json=table)).status_code == 200

    async def routed(tsi: str) -> tuple[dict, email.message.EmailMessage]:
        response = await post_job(panel, {"function": "tsi_routing", "tsi": tsi}, FAX)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert (await final_status(panel, job_id))["status"] == "sent"
        return await received(stack, emulator_http, job_id)

    entry, message = await routed("acme sales")
    assert sorted(entry["rcpt_tos"]) == ["lead@fabrikam.example", "sales@fabrikam.example"]
    assert message["Subject"] == "Routed fax (TSI acme sales)"
    assert facts(text_and_html(message)[0])["TSI"] == "acme sales"
    assert [a.get_content() for a in message.iter_attachments()] == [FAX[1]]
    entry, _ = await routed("Somebody Else")
    assert entry["rcpt_tos"] == ["faxes@fabrikam.example"], "no route: the default"
    assert (await admin.put(base, json={**table, "default": []})).status_code == 200
    refused = await post_job(panel, {"function": "tsi_routing", "tsi": "Somebody Else"}, FAX)
    assert refused.status_code == 422 and refused.json()["type"].endswith("/tsi-not-routed")
    assert "'Somebody Else'" in refused.json()["detail"]


POLICIES = ("administrator_address", "login_user_address", "allow")


@pytest.fixture(scope="module")
async def tenant_per_policy(stack, emulator_http):
    """A tenant under each From policy, its administrator signed in (all three at once)."""
    principals = await asyncio.gather(
        *(tenant_with_administrator_grant(stack, emulator_http, from_policy=p) for p in POLICIES)
    )
    return dict(zip(POLICIES, principals, strict=True))


@pytest.mark.parametrize("policy", POLICIES)
async def test_internet_fax_is_sent_as_the_machine_address_under_every_from_policy(
    stack, emulator_http, tenant_per_policy, policy
) -> None:
    principal = tenant_per_policy[policy]
    user = f"user@{principal.tenant_id}.example"
    device_id, secret = await register_device(stack, principal.tenant_id)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:
        job = {
            "function": "internet_fax_tx",
            "to": ["fax-gateway@fabrikam.example"],
            "machine_address": principal.address,
            "login_user": user,
            "requested_from": user,
        }
        response = await post_job(panel, job, FAX)
        assert response.status_code == 202, response.text
        status = await final_status(panel, response.json()["job_id"])
        assert status["status"] == "sent", status
        entry, message = await received(stack, emulator_http, response.json()["job_id"])
    assert message["From"] == principal.address and entry["auth_user"] == principal.address
    assert status["sender"] == principal.address


async def test_a_fax_forwarded_over_smtp_needs_its_document(stack, emulator_http, admin, fleet) -> None:
    principal, _, _ = fleet
    device_id = f"fwd-{uuid.uuid4().hex[:6]}"
    registered = await admin.post(
        f"/v1/admin/tenants/{principal.tenant_id}/devices",
        json={"device_id": device_id, "smtp_function": "forward_tx"},
    )
    secret = registered.json()["secret"]
    bare = email.message.EmailMessage()
    bare["From"], bare["To"], bare["Subject"] = "fax@contoso.example", "ops@fabrikam.example", "Fax"
    bare["Message-ID"] = f"<{uuid.uuid4().hex}@fax>"
    bare.set_content("A fax arrived.")
    with_fax = email.message.EmailMessage()
    for header in ("From", "To", "Subject"):
        with_fax[header] = bare[header]
    with_fax["Message-ID"] = f"<{uuid.uuid4().hex}@fax>"
    with_fax.set_content("A fax arrived.")
    with_fax.add_attachment(FAX[1], maintype="image", subtype="tiff", filename="fax.tif")
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context(stack)
    ) as smtp:
        await smtp.ehlo()
        await smtp.auth_plain(device_id, secret)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.send_message(bare)
        assert refused.value.code == 550 and "attach the fax document" in refused.value.message
        _, reply = await smtp.send_message(with_fax)
    job_id = reply.rsplit(" ", 1)[-1]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:
        assert (await final_status(panel, job_id))["status"] == "sent"
    _, message = await received(stack, emulator_http, job_id)
    assert [a.get_content() for a in message.iter_attachments()] == [FAX[1]]
    assert message["X-Fleetmail-Function"] == "forward_tx"


async def test_a_tsi_routing_table_is_reached_only_by_keys_of_its_tenant(stack, admin, fleet) -> None:
    principal, _, _ = fleet
    theirs = f"/v1/admin/tenants/{principal.tenant_id}/tsi-routing"
    mine = f"t-{uuid.uuid4().hex[:8]}"
    created = await admin.put(f"/v1/admin/tenants/{mine}", json={"tenant_id": mine})
    assert created.status_code == 200, created.text
    keys = {}
    for name, body in (
        ("fleet", {"name": "Contoso IT", "role": "fleet_admin", "tenant_ids": [mine]}),
        ("operator", {"name": "NOC", "role": "operator"}),
    ):
        answer = await admin.post("/v1/admin/api-keys", json=body)
        assert answer.status_code == 201, answer.text
        keys[name] = answer.json()["key"]
    table = {"routes": [], "default": ["attacker@elsewhere.example"]}
    before = (await admin.get(theirs)).json()
    async with (
        httpx.AsyncClient(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {keys['fleet']}"}
        ) as fleet_key,
        httpx.AsyncClient(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {keys['operator']}"}
        ) as operator,
    ):
        assert (await fleet_key.put(f"/v1/admin/tenants/{mine}/tsi-routing", json=table)).status_code == 200
        for attempt in (
            fleet_key.get(theirs),
            fleet_key.put(theirs, json=table),
            fleet_key.put(f"{theirs}/routes/X", json={"recipients": ["attacker@elsewhere.example"]}),
            fleet_key.delete(f"{theirs}/routes/X"),
            operator.put(theirs, json=table),
        ):
            assert (await attempt).status_code == 403
        assert (await operator.get(theirs)).json() == before, "an operator reads, and changes nothing"
    assert (await admin.get(theirs)).json() == before


async def test_allow_sends_as_what_the_login_user_may_send_as_else_from_the_administrator(
    stack, emulator_http, admin, tenant_per_policy
) -> None:
    principal = tenant_per_policy["allow"]
    tenant_id = principal.tenant_id
    user, shared = f"ann@{tenant_id}.example", f"scans@{tenant_id}.example"
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    saved = await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings | {"send_as": {user: [shared]}})
    assert saved.status_code == 200 and saved.json()["send_as"] == {user: [shared]}, saved.text
    bad = await admin.put(
        f"/v1/admin/tenants/{tenant_id}", json=settings | {"send_as": {user: ["not an address"]}}
    )
    assert bad.status_code == 422
    # The provider's side of it: Ann's mailbox has Send As for the shared one.
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes", json={"address": user, "send_as": [shared]}
    )
    device_id, secret = await register_device(stack, tenant_id)
    await user_signs_in(stack, emulator_http, (device_id, secret), user)
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=60) as panel:

        async def sent_from(job: dict) -> tuple[dict, email.message.EmailMessage]:
            response = await post_job(
                panel, {"function": "scan_to_email", "to": ["boss@fabrikam.example"], **job}
            )
            assert response.status_code == 202, response.text
            status = await final_status(panel, response.json()["job_id"])
            assert status["status"] == "sent", status
            return await received(stack, emulator_http, response.json()["job_id"])

        entry, message = await sent_from({"login_user": user, "requested_from": shared})
        assert message["From"] == shared and entry["auth_user"] == user
        entry, message = await sent_from({"login_user": user})
        assert message["From"] == user and entry["auth_user"] == user
        entry, message = await sent_from({"requested_from": shared})  # nobody logged in
        assert message["From"] == principal.address and entry["auth_user"] == principal.address
        refused = await post_job(
            panel,
            {
                "function": "scan_to_email",
                "to": ["boss@fabrikam.example"],
                "login_user": user,
                "requested_from": f"ceo@{tenant_id}.example",
            },
        )
        status = await final_status(panel, refused.json()["job_id"])
    assert status["status"] == "failed" and status["reason_code"] == "sender_not_allowed"
    assert f"{user} may not send as ceo@{tenant_id}.example" in status["detail"]
