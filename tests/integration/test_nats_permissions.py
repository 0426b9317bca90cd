"""Least privilege on the bus: nats-server runs with exactly deploy/nats/accounts.conf, the four
services run under their own users (streams declared beforehand by the provisioner), a job
travels the whole path without one permission violation, and every forbidden publish and
subscribe is refused."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fleetmail_contracts.streams import ATTACHMENTS_BUCKET
from fleetmail_devkit.probes import device_panel, tenant_with_administrator_grant
from fleetmail_devkit.stack import Stack
from fleetmail_runtime.bus import inbox_prefix
from nats.js.errors import NotFoundError

from tests.utils import eventually
from tests.utils.jobs import final_status, submit
from tests.utils.nats_users import connected_as, least_privilege_stack, violations

pytestmark = pytest.mark.own_stack

# Where each service's replies arrive (fleetmail_runtime.bus.inbox_prefix).
INBOXES = {
    "provisioner": "_INBOX_provisioner",
    "job-gateway": "_INBOX_job_gateway",
    "token-service": "_INBOX_token_service",
    "mail-service": "_INBOX_mail_service",
    "notifier": "_INBOX_notifier",
}

# (user, action, subject): what each service must never do.
FORBIDDEN = [
    # Only mail-service requests access tokens (and SMTP credentials).
    *((u, "pub", "fleetmail.rpc.v1.tokens.access") for u in ("job-gateway", "notifier", "token-service")),
    *((u, "pub", "fleetmail.rpc.v1.tokens.credentials.smtp") for u in ("job-gateway", "notifier")),
    # Only job-gateway publishes job commands; mail-service may only put back its parked jobs.
    *((u, "pub", "fleetmail.jobs.v1.scan_to_email") for u in ("mail-service", "token-service", "notifier")),
    ("notifier", "pub", "fleetmail.jobs.v1.resumed.scan_to_email"),
    # Only token-service answers token requests and publishes token events.
    *((u, "sub", "fleetmail.rpc.v1.tokens.access") for u in ("job-gateway", "mail-service", "notifier")),
    *((u, "sub", "fleetmail.rpc.v1.tokens.>") for u in ("job-gateway", "mail-service", "notifier")),
    *(
        (u, "pub", "fleetmail.events.v1.tokens.refreshed")
        for u in ("job-gateway", "mail-service", "notifier")
    ),
    # Nobody forges another service's events or answers its requests.
    *((u, "pub", "fleetmail.events.v1.mail.sent") for u in ("job-gateway", "token-service", "notifier")),
    *(
        (u, "pub", "fleetmail.events.v1.alerts.raised")
        for u in ("job-gateway", "token-service", "mail-service")
    ),
    *((u, "sub", "fleetmail.rpc.v1.alerts.list") for u in ("job-gateway", "token-service", "mail-service")),
    # No service reads what it does not need.
    *((u, "sub", "fleetmail.jobs.>") for u in ("job-gateway", "token-service", "mail-service", "notifier")),
    *((u, "sub", ">") for u in ("job-gateway", "token-service", "mail-service", "notifier")),
    ("notifier", "sub", "$O.fleetmail_attachments.>"),
    ("token-service", "pub", "$JS.API.STREAM.INFO.OBJ_fleetmail_attachments"),
    ("notifier", "pub", "$JS.API.DIRECT.GET.KV_fleetmail_delivery_ledger.$KV.fleetmail_delivery_ledger.x"),
    ("job-gateway", "pub", "$JS.API.CONSUMER.MSG.NEXT.FLEETMAIL_JOBS.mail-service"),
    ("notifier", "pub", "$JS.API.CONSUMER.MSG.NEXT.FLEETMAIL_EVENTS.job-gateway-status"),
    ("mail-service", "pub", "fleetmail.rpc.v1.tokens.credentials.webhook"),
    ("mail-service", "pub", "fleetmail.rpc.v1.tokens.credentials.set"),
    # Tenants are written by job-gateway only (the others read and watch them).
    *(
        (u, "pub", subject)
        for u in ("token-service", "mail-service", "notifier")
        for subject in ("$KV.fleetmail_tenants.contoso", "$JS.API.STREAM.PURGE.KV_fleetmail_tenants")
    ),
    # Replies carry access tokens, SMTP passwords, webhook secrets: each service subscribes to
    # its own inbox prefix only, never to the shared `_INBOX.>` or to another's.
    *((u, "sub", "_INBOX.>") for u in ("job-gateway", "token-service", "mail-service", "notifier")),
    *(
        (u, "sub", f"{INBOXES[other]}.>")
        for u in ("job-gateway", "token-service", "mail-service", "notifier")
        for other in INBOXES
        if other != u
    ),
    # No service changes or deletes streams.
    *(
        (u, "pub", "$JS.API.STREAM.DELETE.FLEETMAIL_JOBS")
        for u in ("job-gateway", "token-service", "mail-service", "notifier")
    ),
    *(
        (u, "pub", "$JS.API.STREAM.CREATE.FLEETMAIL_EVIL")
        for u in ("job-gateway", "token-service", "mail-service", "notifier")
    ),
    *(
        (u, "pub", "$JS.API.STREAM.PURGE.FLEETMAIL_EVENTS")
        for u in ("job-gateway", "token-service", "mail-service", "notifier")
    ),
]


@pytest.fixture(scope="module")
async def locked_stack() -> AsyncIterator[Stack]:
    async with least_privilege_stack("fleetmail-perm-") as stack:
        yield stack


async def test_a_job_travels_the_whole_path_under_least_privilege(locked_stack: Stack) -> None:
    stack = locked_stack
    async with httpx.AsyncClient(verify=stack.ssl_context(), timeout=30, trust_env=False) as emulator:
        principal = await tenant_with_administrator_grant(stack, emulator)
    headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as admin:
        async with device_panel(stack, principal.tenant_id) as panel:
            job = {"function": "scan_to_email", "to": ["x@fabrikam.example"]}
            files = {"files": ("scan.pdf", b"%PDF-1.4 scan", "application/pdf")}
            status = await final_status(panel, await submit(panel, job, files), seconds=30)
        assert status["status"] == "sent", (status, violations(stack))
        # The administrator's views that cross services work under the same users.
        assert (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}/tokens")).status_code == 200
        assert (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}/alerts")).status_code == 200
        assert (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}/dead-letters")).status_code == 200
        assert len((await admin.get("/v1/admin/queues")).json()) == 5
    # An upload whose job never came (job-gateway stores it): mail-service's sweep removes it.
    async with connected_as(stack, "job-gateway", inbox_prefix=inbox_prefix("job-gateway")) as gateway:
        store = await gateway.client.jetstream().object_store(ATTACHMENTS_BUCKET)
        await store.put("orphan/1/0", io.BytesIO(b"left by a crash"))

        async def swept() -> bool:
            try:
                await store.get_info("orphan/1/0")
            except NotFoundError:
                return True
            return False

        await eventually(swept, within=30, what="the orphan to be swept", every=0.2)
    assert violations(stack) == [], "a service needed something its NATS user may not do"


@pytest.mark.parametrize("user", ["job-gateway", "token-service", "mail-service", "notifier"])
async def test_every_forbidden_publish_and_subscribe_is_refused(locked_stack: Stack, user: str) -> None:
    async with connected_as(locked_stack, user, inbox_prefix=INBOXES[user]) as intruder:
        for _, action, subject in [f for f in FORBIDDEN if f[0] == user]:
            intruder.errors.clear()
            if action == "pub":
                await intruder.client.publish(subject, b"forbidden")
            else:
                await intruder.client.subscribe(subject)
            await intruder.refused("publish" if action == "pub" else "subscription", subject)


async def connect_raw(stack: Stack, credentials: dict[str, str]) -> str:
    """The server's answer to a CONNECT with these credentials, on a plain socket (the
    protocol's own words, and nothing left open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports.nats)
    try:
        await reader.readline()  # INFO
        connect = {"verbose": False, "pedantic": False, "protocol": 1, **credentials}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_wrong_password_or_no_user_is_refused(locked_stack: Stack) -> None:
    right = {"user": "mail-service", "pass": locked_stack.nats_passwords["mail-service"]}
    assert await connect_raw(locked_stack, right) == "PONG"
    assert "Authorization Violation" in await connect_raw(locked_stack, {**right, "pass": "wrong"})
    assert "Authorization Violation" in await connect_raw(locked_stack, {})
