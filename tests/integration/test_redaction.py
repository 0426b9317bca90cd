"""No secret leaves a process through its logs, traces or metrics.

The test drives every error path that has a token, a password or a client secret nearby —
the SMTP server refusing a token, a forced refresh, the token endpoint failing, a revoked
grant, a wrong client secret, wrong SMTP passwords, devices with wrong secrets on HTTP and
SMTP — then scans everything the services wrote (log lines), exported (every OTLP request
the session's collector received) and exposed (every scrape endpoint) for each secret, in
clear and in the encodings SMTP uses.
"""

from __future__ import annotations

import base64
import uuid

import aiosmtplib
import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.otlp import OtlpSink
from fleetmail_devkit.probes import register_device, request_tokens, scrape, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.jobs import final_status, submit
from tests.utils.smtp import context, scan
from tests.utils.tenants import app_only_tenant, confidential_app

SERVICES = ("job-gateway", "token-service", "mail-service", "notifier")


def encodings(secret: str, user: str | None = None) -> set[str]:
    """The secret as it could leak: in clear, base64 alone, and inside SMTP AUTH payloads."""
    forms = {secret, base64.b64encode(secret.encode()).decode()}
    if user is not None:
        forms.add(base64.b64encode(f"user={user}\x01auth=Bearer {secret}\x01\x01".encode()).decode())
        forms.add(base64.b64encode(f"\0{user}\0{secret}".encode()).decode())
    return forms


async def issued_tokens(stack, emulator_http) -> set[str]:
    microsoft = (await emulator_http.get(f"{stack.microsoft_url}/_emulator/issued")).json()
    google = (await emulator_http.get(f"{stack.google_url}/_emulator/issued")).json()
    return {
        t
        for issued in (microsoft, google)
        for kind in ("access_tokens", "refresh_tokens")
        for t in issued[kind]
    }


async def test_no_secret_in_logs_traces_or_metrics(stack, emulator_http, admin, otlp_sink: OtlpSink) -> None:
    # What this test makes, from here on: the tokens issued and the telemetry exported.
    tokens_before = await issued_tokens(stack, emulator_http)
    exported_before = len(otlp_sink.bodies)
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant, address = principal.tenant_id, principal.address
    device_id, device_secret = await register_device(stack, tenant)
    secrets: dict[str, str | None] = {device_secret: device_id}
    smtp_faults = f"{stack.smtp_control_url}/_emulator/faults"
    job = {"function": "scan_to_email", "to": ["x@fabrikam.example"]}

    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(device_id, device_secret), timeout=60
    ) as panel:
        # The SMTP server refuses the token: a forced refresh, then the job goes.
        await emulator_http.post(
            smtp_faults,
            json={"stage": "auth", "code": 535, "text": "5.7.3 Authentication unsuccessful", "count": 1},
        )
        assert (await final_status(panel, await submit(panel, job)))["status"] == "sent"
        # The grant is revoked at the provider: the next refresh gets invalid_grant, the job fails.
        await emulator_http.post(f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": address})
        [dead] = await request_tokens(stack, principal, 1, force_refresh=True)
        assert dead.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED
        assert (await final_status(panel, await submit(panel, job)))["status"] == "failed"

    # Another grant: the token endpoint fails on its refresh (the grant is backed off, not dead).
    other = await tenant_with_administrator_grant(stack, emulator_http)
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/faults",
        json={"status": 503, "count": 1, "grant_type": "refresh_token"},
    )
    [unavailable] = await request_tokens(stack, other, 1, force_refresh=True)
    assert unavailable.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE

    # A browser comes back to the OAuth callback with an authorization code (and a stale state).
    code = f"auth-code-{uuid.uuid4().hex}"
    secrets[code] = None
    async with httpx.AsyncClient(base_url=stack.gateway_url) as browser:
        answered = await browser.get("/oauth/callback", params={"code": code, "state": "stale"})
        assert answered.status_code < 500

    # A device with a wrong secret, over HTTP and over SMTP; the right one over SMTP.
    wrong = f"wrong-{uuid.uuid4().hex}"
    secrets[wrong] = device_id
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(device_id, wrong)) as stranger:
        assert (await stranger.post("/v1/jobs", data={"job": "{}"})).status_code == 401
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context(stack)
    )
    async with smtp:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await smtp.login(device_id, wrong)
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=stack.ports.gateway_smtp, start_tls=True, tls_context=context(stack)
    ) as smtp:
        await smtp.login(device_id, device_secret)
        await smtp.send_message(scan())

    # An app-only tenant with a wrong client secret, then the right one.
    client_id, client_secret = await confidential_app(stack, emulator_http)
    app_tenant, app_address = await app_only_tenant(admin, stack, "microsoft", client_id=client_id)
    app_principal = Principal(tenant_id=app_tenant, kind=PrincipalKind.ADMINISTRATOR, address=app_address)
    wrong_client_secret = f"wrong-client-secret-{uuid.uuid4().hex}"
    secrets[client_secret] = secrets[wrong_client_secret] = None
    await admin.put(
        f"/v1/admin/tenants/{app_tenant}/credentials", json={"microsoft_client_secret": wrong_client_secret}
    )
    [refused] = await request_tokens(stack, app_principal, 1)
    assert refused.outcome is AccessTokenOutcome.CONFIGURATION_ERROR
    await admin.put(
        f"/v1/admin/tenants/{app_tenant}/credentials", json={"microsoft_client_secret": client_secret}
    )
    [granted] = await request_tokens(stack, app_principal, 1)
    assert granted.outcome is AccessTokenOutcome.GRANTED

    # OAuth off, with a stored SMTP password the server refuses.
    basic = f"basic-{uuid.uuid4().hex[:8]}"
    basic_address = f"scanner@{basic}.example"
    await admin.put(
        f"/v1/admin/tenants/{basic}",
        json={
            "tenant_id": basic,
            "administrator_address": basic_address,
            "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
        },
    )
    real_password, stored_password = f"pw-{uuid.uuid4().hex}", f"stale-pw-{uuid.uuid4().hex}"
    secrets[real_password] = secrets[stored_password] = basic_address
    await emulator_http.post(
        f"{stack.smtp_control_url}/_emulator/mailboxes",
        json={"address": basic_address, "password": real_password},
    )
    await admin.put(
        f"/v1/admin/tenants/{basic}/credentials",
        json={"smtp_username": basic_address, "smtp_password": stored_password},
    )
    basic_device_id, basic_secret = await register_device(stack, basic)
    secrets[basic_secret] = basic_device_id
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(basic_device_id, basic_secret), timeout=60
    ) as panel:
        status = await final_status(panel, await submit(panel, job))
    assert status["status"] == "failed" and status["reason_code"] == "authentication_failed"

    # Every token the providers issued during this test, with the address they were used for.
    for token in await issued_tokens(stack, emulator_http) - tokens_before:
        secrets[token] = address
    assert len(secrets) > 10

    # Wait until the services have exported this test's last job (spans are batched every 200 ms).
    def exported() -> str:
        return b"\n".join(otlp_sink.bodies[exported_before:]).decode("utf-8", errors="replace")

    await eventually(lambda: basic in exported(), within=30, what="the last job's spans at the collector")
    outputs: dict[str, str] = {"OTLP export": exported()}
    for service in SERVICES:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            outputs[f"{service} /metrics"] = (await http.get(stack.metrics_url(service))).text
        assert await scrape(stack, service)
    # Every line every service process wrote in this session, however long, including the
    # replicas earlier tests started and stopped.
    logs = [
        path for path in stack.log_files() if path.stem.split("-")[0] in ("job", "token", "mail", "notifier")
    ]
    assert {path.stem for path in logs} >= set(SERVICES)
    for path in logs:
        outputs[f"{path.stem} log"] = path.read_text(encoding="utf-8", errors="replace")
    assert all(outputs.values())
    # The scan reads real output: this test's own jobs are in the traces and the metrics.
    assert tenant in outputs["OTLP export"] and basic in outputs["mail-service /metrics"]

    for secret, user in secrets.items():
        for form in encodings(secret, user):
            for where, text in outputs.items():
                assert form not in text, f"a secret ({form[:6]}…) is in the {where}"
