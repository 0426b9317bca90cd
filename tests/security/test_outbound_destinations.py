"""A tenant cannot make fleetmail connect to the operator's internal network, nor add
recipients to the operator's alert mail.

The attacker holds a tenant's administrator key and names internal destinations — cloud
metadata, a private address, the same hidden in IPv6 or written as a number — as its webhook,
its SMTP server and its proxy. Each save is refused with a 422 naming the rule, and nothing is
stored (no connection to any of them is ever attempted: the test stack allows loopback only,
and these are refused before anything connects). Alert recipients must each be one plain
address; entries stored before that rule are skipped, and the alert says so, while the other
recipients still get their mail.

That a name resolving to a refused address is refused when connecting, and that nothing then
reaches a listener, is tested on the services' real adapters with the loopback exception off
(tests/component/test_outbound_adapters.py).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from fleetmail_contracts.tenants import NotificationSettings, TenantSettings
from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.probes import request_tokens, tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.tenants import new_tenant, write_bucket

REFUSED = "https://fleetmail.dev/problems/outbound-destination-refused"
INVALID_ADDRESS = "https://fleetmail.dev/problems/invalid-address"

INTERNAL = {
    "169.254.169.254": "link-local",
    "10.0.0.1": "private",
    "[::ffff:169.254.169.254]": "carries 169.254.169.254",
    "2852039166": "link-local",
}


def destination(setting: str, host: str) -> dict[str, object]:
    if setting == "webhook":
        return {"notifications": {"webhooks": [{"url": f"https://{host}/hook", "name": "ops"}]}}
    if setting == "smtp":
        return {"smtp": {"host": host, "port": 587}}
    return {"proxy_url": f"http://{host}:3128"}


@pytest.mark.parametrize("setting", ["webhook", "smtp", "proxy"])
@pytest.mark.parametrize("host", INTERNAL)
async def test_an_internal_destination_is_refused_when_saved(
    admin: httpx.AsyncClient, setting: str, host: str
) -> None:
    tenant_id, _ = await new_tenant(admin)
    before = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    refused = await admin.put(f"/v1/admin/tenants/{tenant_id}", json={**before, **destination(setting, host)})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"] == REFUSED
    assert INTERNAL[host] in problem["detail"] and "not allowed by this deployment" in problem["detail"]
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json() == before


BAD_RECIPIENTS = [
    "ops@acme.example\r\nBcc: everyone@elsewhere.example",
    "ops@acme.example, boss@elsewhere.example",
    "Ops <ops@acme.example>, Boss <boss@elsewhere.example>",
]


@pytest.mark.parametrize("recipient", BAD_RECIPIENTS)
async def test_an_alert_recipient_that_is_not_one_address_is_refused(
    admin: httpx.AsyncClient, recipient: str
) -> None:
    tenant_id, _ = await new_tenant(admin)
    before = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    notifications = {"email_recipients": [f"ops@{tenant_id}.example", recipient]}
    refused = await admin.put(
        f"/v1/admin/tenants/{tenant_id}", json={**before, "notifications": notifications}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == INVALID_ADDRESS and "email_recipients[1]" in refused.json()["detail"]
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json() == before


@pytest.mark.timeout(120)
async def test_stored_bad_recipients_are_skipped_and_the_others_get_the_alert(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    ops = f"ops-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    smuggled = f"smuggled-{uuid.uuid4().hex[:4]}@elsewhere.example"
    stored = TenantSettings.model_validate((await admin.get(f"/v1/admin/tenants/{tenant_id}")).json())
    bad = (f"{ops}\r\nBcc: {smuggled}", f"{ops}, {smuggled}")
    notifications = NotificationSettings(email_recipients=(*bad, ops))
    await write_bucket(stack, stored.model_copy(update={"notifications": notifications}))

    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": principal.address}
    )

    async def refused_now() -> bool:
        [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
        return reply.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED

    await eventually(refused_now, within=20, what="token-service finding the grant revoked")

    async def alert_mail() -> list[dict]:
        found = (
            await emulator_http.get(
                f"{stack.smtp_control_url}/_emulator/messages", params={"subject_prefix": "[fleetmail]"}
            )
        ).json()
        return [m for m in found if any(tenant_id in r or "elsewhere" in r for r in m["rcpt_tos"])]

    [mail] = await eventually(alert_mail, within=60, what="the alert mail to the good recipient")
    assert mail["rcpt_tos"] == [ops]

    async def named_on_the_alert() -> list[str]:
        listed = (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json()
        return [p for alert in listed for p in alert.get("channel_problems", []) if "skipped" in p]

    problems = await eventually(named_on_the_alert, within=20, what="the skipped recipients on the alert")
    assert len(problems) == len(bad) and all("not a single e-mail address" in p for p in problems)
    assert not any(smuggled in r for m in await alert_mail() for r in m["rcpt_tos"])
