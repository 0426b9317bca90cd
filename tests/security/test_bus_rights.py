"""Issue 18, defect 5: bus rights. An attacker holding one service's NATS credentials (a
compromised job-gateway or notifier, a token-service or mail-service replica) against the
real stack, nats-server running with exactly deploy/nats/accounts.conf.

- Replies carry secrets (access tokens, SMTP passwords, webhook secrets): job-gateway's or
  notifier's user cannot subscribe to the shared `_INBOX.>` nor to another service's inbox
  prefix, and while a job is delivered it reads none of the access-token replies.
- Tenant settings are job-gateway's: token-service's and mail-service's users can read and
  watch the tenants bucket, but a forged write or delete is refused and the settings stay.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fleetmail_contracts.streams import TENANTS_BUCKET
from fleetmail_devkit.probes import device_panel, tenant_with_administrator_grant
from fleetmail_devkit.stack import Stack
from fleetmail_runtime.bus import inbox_prefix
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from tests.utils.jobs import final_status, submit
from tests.utils.nats_users import SERVICES, connected_as, least_privilege_stack

pytestmark = pytest.mark.own_stack


@pytest.fixture(scope="module")
async def locked_stack() -> AsyncIterator[Stack]:
    async with least_privilege_stack("fleetmail-bus-rights-") as stack:
        yield stack


@pytest.mark.timeout(90)
async def test_a_compromised_gateway_or_notifier_reads_no_one_elses_replies(locked_stack: Stack) -> None:
    stack = locked_stack
    async with httpx.AsyncClient(verify=stack.ssl_context(), timeout=30, trust_env=False) as emulator:
        principal = await tenant_with_administrator_grant(stack, emulator)
    overheard: list[Msg] = []

    async def overhear(msg: Msg) -> None:
        overheard.append(msg)

    async with (
        connected_as(stack, "job-gateway") as gateway,
        connected_as(stack, "notifier", inbox_prefix=inbox_prefix("notifier")) as notifier,
    ):
        # Every reply inbox there is, and mail-service's own, where its access tokens arrive.
        attempts = {
            intruder: ["_INBOX.>", *(f"{inbox_prefix(s)}.>" for s in SERVICES if s != own)]
            for intruder, own in ((gateway, "job-gateway"), (notifier, "notifier"))
        }
        for intruder, subjects in attempts.items():
            for subject in subjects:
                await intruder.client.subscribe(subject, cb=overhear)
            await intruder.client.flush()

        # Meanwhile a device's job is delivered: mail-service asks token-service for the
        # administrator's access token, and the answer comes back as a reply.
        async with device_panel(stack, principal.tenant_id) as panel:
            job = {"function": "scan_to_email", "to": ["x@fabrikam.example"]}
            files = {"files": ("scan.pdf", b"%PDF-1.4 scan", "application/pdf")}
            status = await final_status(panel, await submit(panel, job, files), seconds=30)
        assert status["status"] == "sent", status
        for intruder in attempts:
            await intruder.client.flush()

        tokens = [m.subject for m in overheard if b'"access_token"' in m.data]
        assert tokens == [], f"an access token was read off another service's reply inbox: {tokens}"
        assert overheard == [], f"replies to other services were read: {[m.subject for m in overheard]}"
        for intruder, subjects in attempts.items():
            for subject in subjects:
                await intruder.refused("subscription", subject)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("user", ["token-service", "mail-service", "notifier"])
async def test_only_job_gateway_writes_tenant_settings(locked_stack: Stack, user: str) -> None:
    stack = locked_stack
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    settings = {
        "tenant_id": tenant_id,
        "oauth_enabled": True,
        "administrator_address": f"admin@{tenant_id}.example",
        "smtp": {"host": "127.0.0.1", "port": stack.ports.smtp_starttls},
    }
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as admin:
        created = await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)
        assert created.status_code == 200, created.text

    # The service's user as the service connects: reading and watching work...
    async with connected_as(stack, user, inbox_prefix=inbox_prefix(user)) as intruder:
        tenants = await intruder.client.jetstream(timeout=2).key_value(TENANTS_BUCKET)
        original = (await tenants.get(tenant_id)).value
        assert original is not None and json.loads(original)["tenant_id"] == tenant_id
        watch = await tenants.watch(tenant_id)
        assert (await watch.updates(timeout=5)) is not None
        await watch.stop()

        # ...but sending the tenant's mail through the attacker's server, or deleting the
        # tenant, is refused.
        # A refused write gets no acknowledgement: half a second says so (the refusal itself is
        # read from the server's error just below, not inferred from the silence).
        writer = await intruder.client.jetstream(timeout=0.5).key_value(TENANTS_BUCKET)
        forged = {**json.loads(original), "smtp": {"host": "mx.attacker.example", "port": 25}}
        with pytest.raises((NatsError, TimeoutError)):
            await writer.put(tenant_id, json.dumps(forged).encode())
        await intruder.refused("publish", f"$KV.{TENANTS_BUCKET}.{tenant_id}")
        with pytest.raises((NatsError, TimeoutError)):
            await writer.delete(tenant_id)

        assert (await tenants.get(tenant_id)).value == original
