"""The SMTP listener for devices that cannot do OAuth, driven by real SMTP clients."""

import asyncio
import smtplib
import uuid
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
from fleetmail_devkit.probes import register_device, tenant_with_administrator_grant

from tests.conftest import ALERT_RELAY
from tests.utils import eventually
from tests.utils.jobs import delivered_with_subject, final_status, received
from tests.utils.smtp import context, scan
from tests.utils.tenants import user_signs_in


@pytest.fixture
async def device(stack, emulator_http):
    """A device of a tenant with an administrator grant: (device id, secret, tenant id)."""
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    device_id, secret = await register_device(stack, principal.tenant_id)
    return device_id, secret, principal.tenant_id


async def test_starttls_auth_plain_queues_a_job_that_is_delivered_with_oauth(
    stack, emulator_http, device
) -> None:
    device_id, secret, _ = device
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context(stack)
    ) as smtp:
        await smtp.ehlo()
        assert "plain" in smtp.server_auth_methods
        await smtp.auth_plain(device_id, secret)  # not login(): it picks a mechanism itself
        errors, reply = await smtp.send_message(scan())
    assert errors == {} and "OK queued as " in reply
    job_id = reply.rsplit(" ", 1)[-1]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=30) as panel:
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    messages = (await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages")).json()
    [entry] = [m for m in messages if m["message_id"] == f"<{job_id}@fleetmail>"]
    assert entry["auth_mechanism"] == "XOAUTH2" and entry["subject"] == "Scan from an old MFP"


def test_implicit_tls_and_auth_login_with_smtplib(stack, device) -> None:
    device_id, secret, _ = device
    with smtplib.SMTP_SSL("127.0.0.1", stack.ports.gateway_smtps, context=context(stack), timeout=30) as smtp:
        smtp.ehlo()
        assert "LOGIN" in smtp.esmtp_features["auth"].split()
        # AUTH LOGIN itself (smtplib's login() would pick PLAIN, the server's first offer).
        smtp.user, smtp.password = device_id, "not-the-secret"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.auth("LOGIN", smtp.auth_login)
        assert refused.value.smtp_code == 535
        smtp.password = secret
        code, _ = smtp.auth("LOGIN", smtp.auth_login)
        assert code == 235
        smtp.mail("mfp@contoso.example")
        smtp.rcpt("boss@fabrikam.example")
        code, reply = smtp.data(scan().as_string())
    assert code == 250 and b"queued as" in reply, reply


def test_wrong_credentials_and_no_tls_are_refused(stack, device) -> None:
    device_id, _, _ = device
    with smtplib.SMTP("127.0.0.1", stack.ports.gateway_smtp, timeout=30) as smtp:
        smtp.ehlo()
        code, _ = smtp.docmd("MAIL FROM:<mfp@contoso.example>")
        assert code == 530  # STARTTLS first on the submission port
        smtp.starttls(context=context(stack))
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login(device_id, "not-the-secret")
        assert refused.value.smtp_code == 535


async def test_a_helo_only_device_is_let_in_by_its_address(stack, admin, device) -> None:
    _, _, tenant_id = device
    # Another device of the tenant, registered with the address it sends from.
    helo_id = f"helo-{uuid.uuid4().hex[:6]}"
    await admin.post(
        f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": helo_id, "allow_cidrs": ["127.0.0.2/32"]}
    )

    def send(source: str) -> tuple[int, bytes]:
        with smtplib.SMTP(
            "127.0.0.1", stack.ports.gateway_smtp_lan, source_address=(source, 0), timeout=30
        ) as smtp:
            smtp.helo("old-mfp")
            code, text = smtp.docmd("MAIL FROM:<mfp@contoso.example>")
            if code != 250:
                return code, text
            smtp.rcpt("boss@fabrikam.example")
            return smtp.data(scan().as_string())  # a str: smtplib sends CRLF lines

    stranger = await asyncio.to_thread(send, "127.0.0.3")
    assert stranger[0] == 530
    known = await asyncio.to_thread(send, "127.0.0.2")
    assert known[0] == 250 and b"queued as" in known[1], known
    # The job is the device's whose allowlist holds the address.
    job_id = known[1].decode().rsplit(" ", 1)[-1]
    jobs = (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs", params={"device_id": helo_id})).json()
    assert [job["job_id"] for job in jobs] == [job_id]


async def test_a_message_declared_over_the_default_limit_is_refused_before_its_data(
    stack, admin, device
) -> None:
    """A client that declares the size (SIZE at MAIL FROM, as aiosmtplib and smtplib do) is
    refused there, before any data, at the default limit: 30 MiB of documents, base64-encoded,
    with room for the text. (One that does not declare it is refused after its data:
    tests/security/test_submission_limits.py, on a gateway whose limit is 2 MiB.)"""
    device_id, secret, tenant_id = device
    limit = 30 * 1024 * 1024 * 4 // 3 + 1024 * 1024
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=stack.ports.gateway_smtp,
        start_tls=True,
        tls_context=context(stack),
        timeout=60,
    ) as smtp:
        await smtp.login(device_id, secret)
        assert smtp.supports_extension("size")
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await smtp.mail("mfp@contoso.example", options=[f"SIZE={limit + 1}"])
        assert refused.value.code == 552
        within = await smtp.mail("mfp@contoso.example", options=["SIZE=1000"])
        assert within.code == 250
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs")).json() == []


async def test_the_bus_down_gets_451_and_the_device_retries_later(stack, device) -> None:
    device_id, secret, _ = device
    message = scan("Sent during an outage")

    async def send() -> tuple[int, str]:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=stack.ports.gateway_smtp,
            start_tls=True,
            tls_context=context(stack),
            timeout=60,
        ) as smtp:
            await smtp.login(device_id, secret)
            try:
                _, reply = await smtp.send_message(message)
            except aiosmtplib.SMTPDataError as exc:
                return exc.code, exc.message
            return 250, reply

    async def send_until_queued() -> tuple[int, str] | None:
        code, text = await send()
        return (code, text) if code == 250 else None

    nats = stack.part("nats")
    await stack.stop_part(nats)
    try:
        code, text = await send()
        assert code == 451, text
    finally:
        await stack.restart_part(nats)
    # The gateway reconnects by itself: the device's next try is queued.
    code, text = await eventually(send_until_queued, within=60, what="the device's retry to be queued")
    assert code == 250 and "queued as" in text


def message(sender: str, subject: str, to: str = "boss@fabrikam.example") -> EmailMessage:
    """A device's message From `sender`, with a PDF attached."""
    mail = scan(subject)
    mail.replace_header("From", sender)
    mail.replace_header("To", to)
    return mail


async def send_as_device(stack, device_id: str, secret: str, mail: EmailMessage) -> str:
    """The reply to the message sent over SMTP (its last word is the job id when queued)."""
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context(stack)
    ) as smtp:
        await smtp.ehlo()
        await smtp.auth_plain(device_id, secret)
        try:
            _, reply = await smtp.send_message(mail)
        except aiosmtplib.SMTPDataError as exc:
            return f"{exc.code} {exc.message}"
    return reply


async def test_an_smtp_only_device_sends_as_the_login_user_its_from_names_after_the_sign_in(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(
        stack,
        emulator_http,
        from_policy="login_user_address",
        notifications={"sign_in_email": True},
    )
    tenant_id = principal.tenant_id
    device_id, secret = await register_device(stack, tenant_id)
    user = f"walk-up-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    # A From outside the tenant's mail domains has no grant of this tenant to send it.
    refused = await send_as_device(stack, device_id, secret, message("mfp@contoso.example", "Scan"))
    assert refused.startswith("550 5.7.1") and "mail domains" in refused, refused
    reply = await send_as_device(stack, device_id, secret, message(f"Walk Up <{user}>", "Scan of a user"))
    assert "queued as" in reply, reply
    job_id = reply.rsplit(" ", 1)[-1]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=30) as panel:

        async def parked() -> bool:
            return (await panel.get(f"/v1/jobs/{job_id}")).json()["status"] == "parked"

        await eventually(parked, what="the user's job to wait for the sign-in")

        async def on_the_feed() -> list[dict]:
            feed = (await panel.get("/v1/device/information")).json()
            return [a for a in feed if a["principal_address"] == user]

        [request] = await eventually(on_the_feed, what="the sign-in request on the device's feed")
        assert request["title"] == f"{user} must sign in to send" and request["device_id"] == device_id

        async def asked_by_mail() -> list:
            return [
                m
                for _, m in await delivered_with_subject(
                    stack, emulator_http, "[fleetmail] Sign in to send your job"
                )
                if m["To"] == user
            ]

        [mail] = await eventually(asked_by_mail, what="the sign-in e-mail to the user")
        # From the relay's own mailbox, answered to the administrator (a tenant's chosen
        # administrator address is never a From of the operator's relay).
        assert mail["From"] == ALERT_RELAY[0] and mail["Reply-To"] == principal.address
        assert f"device {device_id}" in mail.get_content()
        await user_signs_in(stack, emulator_http, (device_id, secret), user)
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    entry, sent = await received(stack, emulator_http, job_id)
    assert entry["auth_user"] == user and sent["From"] == user
    assert sent["X-Fleetmail-Function"] == "scan_to_email" and sent["Subject"] == "Scan of a user"


async def test_a_devices_rules_file_its_notifications_and_allow_sends_the_rest_as_the_administrator(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http, from_policy="allow")
    tenant_id = principal.tenant_id
    device_id = f"mfp-{uuid.uuid4().hex[:6]}"
    rules = [
        {"function": "total_counter_notification", "subject": "*counter*"},
        {"function": "status_notification", "recipient": "status@*"},
    ]
    registered = await admin.post(
        f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": device_id, "smtp_rules": rules}
    )
    assert registered.status_code == 201, registered.text
    secret = registered.json()["secret"]
    [listed] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/devices")).json()
    assert [{k: v for k, v in rule.items() if v is not None} for rule in listed["smtp_rules"]] == rules
    for bad in (
        [{"function": "scan_to_email"}],
        [{"function": "scan_to_email", "subject": "x" * 201}],
        [{"function": "scan_to_email", "subject": f"{i}"} for i in range(21)],
    ):
        refused = await admin.patch(
            f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"smtp_rules": bad}
        )
        assert refused.status_code == 422, refused.text

    async def sent(mail: EmailMessage) -> EmailMessage:
        reply = await send_as_device(stack, device_id, secret, mail)
        assert "queued as" in reply, reply
        job_id = reply.rsplit(" ", 1)[-1]
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, auth=(device_id, secret), timeout=30
        ) as panel:
            status = await final_status(panel, job_id)
        assert status["status"] == "sent", status
        entry, delivered = await received(stack, emulator_http, job_id)
        assert entry["auth_user"] == principal.address
        return delivered

    # No login user (a From outside the tenant's domains) under [Allow]: the administrator address.
    counters = await sent(
        message("mfp@contoso.example", "Total Counter 2026-11", to="billing@fabrikam.example")
    )
    assert counters["X-Fleetmail-Function"] == "total_counter_notification"
    assert counters["From"] == principal.address
    assert "Please find the scan attached." in counters.get_body(preferencelist=("plain",)).get_content()
    status = await sent(message("mfp@contoso.example", "Paper jam", to="status@fabrikam.example"))
    assert status["X-Fleetmail-Function"] == "status_notification"
    plain = await sent(message("mfp@contoso.example", "Contract scan"))
    assert plain["X-Fleetmail-Function"] == "scan_to_email" and plain["From"] == principal.address
    # A walk-up user types the subject: their message matching the counter rule stays theirs,
    # a scan waiting for their own sign-in, never sent with the administrator's grant.
    user = f"walk-up-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    reply = await send_as_device(stack, device_id, secret, message(user, "Total Counter, honest"))
    assert "queued as" in reply, reply
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, secret), timeout=30) as panel:

        async def parked() -> dict | None:
            status = (await panel.get(f"/v1/jobs/{reply.rsplit(' ', 1)[-1]}")).json()
            return status if status["status"] == "parked" else None

        status = await eventually(parked, what="the user's message to wait for the user's sign-in")
    assert status["function"] == "scan_to_email", status


async def test_a_message_from_a_user_signed_in_at_another_device_waits_for_their_sign_in_here(
    stack, emulator_http
) -> None:
    """A user's grant is the tenant's: a device's message From that user uses it only after
    the user signed in at that device."""
    principal = await tenant_with_administrator_grant(stack, emulator_http, from_policy="login_user_address")
    tenant_id = principal.tenant_id
    mine, theirs = await register_device(stack, tenant_id), await register_device(stack, tenant_id)
    user = f"roaming-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, mine, user)
    refused = await send_as_device(stack, *theirs, message(user, "Not mine to send"))
    assert refused.startswith("550 5.7.1") and "has not signed in at this device" in refused, refused
    await user_signs_in(stack, emulator_http, theirs, user)
    reply = await send_as_device(stack, *theirs, message(user, "Signed in here"))
    assert "queued as" in reply, reply
    job_id = reply.rsplit(" ", 1)[-1]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=theirs, timeout=30) as panel:
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    entry, _ = await received(stack, emulator_http, job_id)
    assert entry["auth_user"] == user
