"""mail-service end to end: every function of the device's table, the reply classes, size."""

import hashlib
from datetime import datetime

import httpx
import pytest
from fleetmail_devkit.fleet import sample_pdf
from fleetmail_devkit.probes import (
    device_panel,
    events,
    tenant_with_administrator_grant,
    token_endpoint_calls,
)
from fleetmail_runtime import smtp_replies

from tests.utils.jobs import final_status, received, submit


@pytest.fixture
async def fleet(stack, emulator_http, request):
    """A tenant with an administrator grant and one registered device; a test parametrized
    with `fleet` indirectly names the tenant's transport (smtp by default)."""
    transport = getattr(request, "param", "smtp")
    principal = await tenant_with_administrator_grant(stack, emulator_http, transport=transport)
    async with device_panel(stack, principal.tenant_id) as panel:
        yield principal, panel


FUNCTIONS = {
    "scan_to_email": {},
    "scan_to_me": {"login_user": "{admin}"},
    "scan_to_url": {"document_url": "https://files.example/scans/1"},
    "internet_fax_tx": {"machine_address": "{admin}"},
    "user_box_email": {"user_box": "box-7"},
    "application_email": {"application": "OpenAPI app"},
    "email_notification": {"event": "toner low"},
    "total_counter_notification": {},
    "forward_tx": {"sender_fax_number": "+49 30 1234"},
    "tsi_routing": {"tsi": "ACME"},
    "status_notification": {"status": "paper jam"},
    "tx_result_report": {"result": "OK"},
}


MECHANISM = {"smtp": "XOAUTH2", "graph": "GRAPH"}
"""How the emulator says a message reached it, per transport."""


@pytest.mark.parametrize("fleet", ["smtp", "graph"], indirect=True)
async def test_every_device_function_is_delivered_from_the_administrator(
    stack, emulator_http, fleet, request
) -> None:
    principal, panel = fleet
    mechanism = MECHANISM[request.node.callspec.params["fleet"]]
    jobs = {}
    for function, extra in FUNCTIONS.items():
        fields = {k: v.replace("{admin}", principal.address) for k, v in extra.items()}
        job = {"function": function, "to": ["someone@fabrikam.example"], **fields}
        if function == "internet_fax_tx":
            files = {"files": ("fax.tif", b"II*\x00" + bytes(64), "image/tiff")}
        else:
            files = {"files": ("scan.pdf", sample_pdf(function), "application/pdf")}
        jobs[function] = await submit(panel, job, files)
    for function, job_id in jobs.items():
        status = await final_status(panel, job_id)
        assert status["status"] == "sent", (function, status)
        entry, message = await received(stack, emulator_http, job_id)
        assert entry["auth_user"] == principal.address and message["From"] == principal.address
        assert entry["auth_mechanism"] == mechanism
        assert message["X-Fleetmail-Function"] == function
        attachments = list(message.iter_attachments())
        if function == "scan_to_url":
            assert attachments == [] and "https://files.example/scans/1" in message.get_body().get_content()
        elif function == "internet_fax_tx":
            assert attachments[0].get_content_type() == "image/tiff"
        else:
            assert attachments[0].get_content() == sample_pdf(function)
        if function == "scan_to_me":
            assert entry["rcpt_tos"] == [principal.address]


async def test_internet_fax_from_another_machine_address_is_refused(stack, emulator_http, fleet) -> None:
    _, panel = fleet
    job_id = await submit(
        panel,
        {
            "function": "internet_fax_tx",
            "to": ["fax@fabrikam.example"],
            "machine_address": "fax-machine@elsewhere.example",
        },
    )
    status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "sender_not_allowed"
    assert "must equal the administrator address" in status["detail"]
    messages = (await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages")).json()
    assert all(m["message_id"] != f"<{job_id}@fleetmail>" for m in messages), "it was sent"


async def test_smtp_auth_disabled_fails_with_the_remedy(stack, emulator_http, fleet) -> None:
    principal, panel = fleet
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes",
        json={"address": principal.address, "smtp_auth_disabled": True},
    )
    job_id = await submit(panel, {"to": ["x@fabrikam.example"]})
    status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "smtp_auth_disabled"
    assert "Authenticated SMTP" in status["remedy"] and status["smtp_reply"].startswith("535 5.7.139")


@pytest.mark.parametrize(
    ("stage", "known", "reason", "remedy_names"),
    [
        ("data", smtp_replies.SEND_AS_DENIED_AT_SUBMISSION, "send_as_denied", "Add-RecipientPermission"),
        ("auth", smtp_replies.SECURITY_DEFAULTS_LOCKED, "configuration_error", "Manage security defaults"),
        ("auth", smtp_replies.SIGN_IN_CRITERIA_NOT_MET, "configuration_error", "sign-in logs"),
    ],
)
async def test_exchanges_refusals_fail_the_job_with_their_remedy(
    stack, emulator_http, fleet, stage: str, known: smtp_replies.KnownReply, reason: str, remedy_names: str
) -> None:
    """Each reply as Exchange words it, for this mailbox only: the job fails for good with the
    reason and the fix the replies table gives it (never a retry, never "sign in again")."""
    principal, panel = fleet
    text = known.text.format(mailbox=principal.address, sender=f"sales@{principal.tenant_id}.example")
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/faults",
        json={"stage": stage, "code": known.code, "text": text, "user": principal.address},
    )
    status = await final_status(panel, await submit(panel, {"to": ["x@fabrikam.example"]}))
    assert status["status"] == "failed" and status["reason_code"] == reason, status
    assert status["smtp_reply"] == f"{known.code} {text}" and remedy_names in status["remedy"]


async def smtp_stats(stack, http: httpx.AsyncClient) -> dict:
    return (await http.get(f"{stack.smtp_control_url}/_emulator/stats")).json()


async def test_a_refused_token_is_refreshed_once_and_the_job_sent(stack, emulator_http, fleet) -> None:
    _, panel = fleet
    before = await token_endpoint_calls(stack, emulator_http)
    refused_before = (await smtp_stats(stack, emulator_http))["auth_failures"]
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/faults",
        json={"stage": "auth", "code": 535, "text": "5.7.3 Authentication unsuccessful", "count": 1},
    )
    job_id = await submit(panel, {"to": ["x@fabrikam.example"]})
    status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    # The server did refuse the first token (the fault was used), and one refresh followed.
    assert (await smtp_stats(stack, emulator_http))["auth_failures"] - refused_before == 1
    assert await token_endpoint_calls(stack, emulator_http) - before == 1


async def test_a_4xx_defers_then_delivers(stack, emulator_http, fleet) -> None:
    _, panel = fleet
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/faults",
        json={"stage": "data", "code": 451, "text": "4.3.2 Service temporarily unavailable", "count": 1},
    )
    job_id = await submit(panel, {"to": ["x@fabrikam.example"]})
    status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    # The job's own events say it was deferred by the 451 first, then sent on its second attempt.
    job_events = [e for e in await events(stack, "fleetmail.events.v1.mail.>") if e["job_id"] == job_id]
    assert [e["kind"] for e in job_events] == ["accepted", "deferred", "sent"], job_events
    deferred = job_events[1]
    assert deferred["attempt"] == 1 and "451 4.3.2" in deferred["reason"]
    assert datetime.fromisoformat(deferred["next_attempt_at"]) > datetime.fromisoformat(
        deferred["occurred_at"]
    )
    entry, _ = await received(stack, emulator_http, job_id)  # exactly one copy arrived
    assert entry["rcpt_tos"] == ["x@fabrikam.example"]


async def test_one_rejected_recipient_does_not_stop_the_others(stack, emulator_http, fleet) -> None:
    _, panel = fleet
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/settings",
        json={"rejected_recipients": ["gone@fabrikam.example"]},
    )
    try:
        job_id = await submit(panel, {"to": ["here@fabrikam.example", "gone@fabrikam.example"]})
        status = await final_status(panel, job_id)
    finally:
        await emulator_http.post(
            f"{stack.smtp_control_url}/_emulator/settings", json={"rejected_recipients": []}
        )
    assert status["status"] == "sent"
    entry, _ = await received(stack, emulator_http, job_id)
    assert entry["rcpt_tos"] == ["here@fabrikam.example"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fleet", ["smtp", "graph"], indirect=True)
async def test_a_25_mb_scan_arrives_intact(stack, emulator_http, fleet, request) -> None:
    _, panel = fleet
    scan = hashlib.sha256(b"25MB").digest() * (25 * 1024 * 1024 // 32)
    job_id = await submit(
        panel, {"to": ["x@fabrikam.example"]}, {"files": ("big.pdf", scan, "application/pdf")}
    )
    status = await final_status(panel, job_id, 120)
    assert status["status"] == "sent", status
    entry, message = await received(stack, emulator_http, job_id)
    assert entry["auth_mechanism"] == MECHANISM[request.node.callspec.params["fleet"]]
    attachment = next(message.iter_attachments())
    assert hashlib.sha256(attachment.get_content()).hexdigest() == hashlib.sha256(scan).hexdigest()
