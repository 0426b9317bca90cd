"""Alerts from the real services: a dead administrator grant, hundreds of jobs failing on it,
the device's information feed, recovery, and a notifier restart."""

import asyncio
import json
import uuid

import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.probes import (
    events,
    events_position,
    queue_jobs,
    request_tokens,
    tenant_with_administrator_grant,
)
from pymongo import AsyncMongoClient

from tests.utils import eventually
from tests.utils.alerts import alerts, notifier_caught_up
from tests.utils.tenants import browser_sign_in, new_tenant

FAILING_JOBS = 300
"""Jobs failing on one dead grant: more than the notifier reads in one batch (256 events), so
the one alert must hold across batches (a thousand proved no more, at three times the CPU)."""


async def job_outcomes(stack, tenant_id: str, after: int) -> list[dict]:
    """The tenant's jobs that ended (sent or failed for good), among the events after `after`."""
    return [
        e
        for kind in ("sent", "failed")
        for e in await events(stack, f"fleetmail.events.v1.mail.{kind}", after)
        if e["tenant_id"] == tenant_id
    ]


async def outbox(stack, tenant_id: str) -> list[dict]:
    """The tenant's notices in the notifier's outbox (its MongoDB database)."""
    client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    try:
        deliveries = client["fleetmail_notifier"]["webhook_deliveries"]
        return [d async for d in deliveries.find({"tenant_id": tenant_id})]
    finally:
        await client.close()


async def kill_grant(stack, emulator_http, principal) -> None:
    """Revoke the grant at the provider; token-service finds out at the next refresh."""
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": principal.address}
    )
    [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert reply.outcome is AccessTokenOutcome.REAUTHORIZATION_REQUIRED


DEAD_GRANT = "administrator_reauthorization_required"


async def raised_events(stack, tenant_id: str, after: int, cause: str = DEAD_GRANT) -> list[dict]:
    """The alerts raised for the tenant's `cause` (not the prompt its new tenant's OAuth 2.0
    raised before the administrator signed in)."""
    return [
        e
        for e in await events(stack, "fleetmail.events.v1.alerts.raised", after)
        if e["tenant_id"] == tenant_id and e["cause"] == cause
    ]


async def dead_grant_alerts(admin, tenant_id: str) -> list[dict]:
    return [a for a in await alerts(admin, tenant_id) if a["cause"] == DEAD_GRANT]


@pytest.mark.timeout(300)
async def test_a_dead_administrator_grant_is_one_alert_on_every_feed_until_reacquired(
    stack, emulator_http, admin
) -> None:
    start = await events_position(stack)
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    device = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"nf-{tenant_id}"})
    ).json()
    await kill_grant(stack, emulator_http, principal)

    [alert] = await eventually(lambda: dead_grant_alerts(admin, tenant_id), what="the alert")
    assert alert["severity"] == "critical"
    assert f"fleetmail tokens acquire {tenant_id}" in alert["remedy"]

    # Many jobs fail on the dead grant, more than one batch of the notifier's: still one
    # alert, raised once.
    await queue_jobs(stack, tenant_id, FAILING_JOBS, f"dead-{uuid.uuid4().hex[:6]}")

    async def all_failed() -> bool:
        return len(await job_outcomes(stack, tenant_id, start)) >= FAILING_JOBS

    await eventually(all_failed, within=120, what=f"the {FAILING_JOBS} jobs to fail")
    await eventually(lambda: notifier_caught_up(stack), within=60, what="the notifier to read them all")
    assert len(await alerts(admin, tenant_id)) == 1
    assert len(await raised_events(stack, tenant_id, start)) == 1

    async with httpx.AsyncClient(
        base_url=stack.gateway_url, auth=(device["device_id"], device["secret"]), timeout=30
    ) as panel:
        feed = (await panel.get("/v1/device/information")).json()
    assert [a["alert_id"] for a in feed] == [alert["alert_id"]]

    # [Acquire] again: the alert resolves by itself and a recovered notice goes out.
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": started["user_code"], "user": principal.address},
    )

    async def resolved() -> bool:
        return not await alerts(admin, tenant_id)

    await eventually(resolved, what="the alert to resolve")
    # The dead grant's alert, resolved (the new tenant's sign-in prompt came and went before).
    [history] = [
        a for a in await alerts(admin, tenant_id, include_resolved="true") if a["cause"] == DEAD_GRANT
    ]
    assert history["state"] == "resolved"
    recovered = [
        e
        for e in await events(stack, "fleetmail.events.v1.alerts.resolved", start)
        if e["tenant_id"] == tenant_id and e["cause"] == DEAD_GRANT
    ]
    assert len(recovered) == 1 and recovered[0]["detail"].startswith("Recovered")


async def test_a_user_who_must_sign_in_shows_on_that_device_only(stack, emulator_http, admin) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json() | {
        "from_policy": "login_user_address"
    }
    await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)
    panels = []
    for name in ("floor1", "floor2"):
        body = (
            await admin.post(
                f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"{name}-{tenant_id}"}
            )
        ).json()
        panels.append(
            httpx.AsyncClient(
                base_url=stack.gateway_url, auth=(body["device_id"], body["secret"]), timeout=30
            )
        )
    user = f"new.user@{tenant_id}.example"
    try:
        job = {"to": ["x@fabrikam.example"], "login_user": user}
        await panels[0].post("/v1/jobs", data={"job": json.dumps(job)})

        async def on_floor1() -> list[dict]:
            return [
                a
                for a in (await panels[0].get("/v1/device/information")).json()
                if a["principal_address"] == user
            ]

        [alert] = await eventually(on_floor1, what="the sign-in request on floor1")
        assert alert["cause"] == "user_reauthorization_required" and not alert["for_administrators"]
        assert [
            a
            for a in (await panels[1].get("/v1/device/information")).json()
            if a["principal_address"] == user
        ] == []
        assert await alerts(admin, tenant_id) == []  # not for the administrators
    finally:
        for panel in panels:
            await panel.aclose()


@pytest.mark.timeout(300)
async def test_a_notifier_restart_loses_and_doubles_nothing(stack, emulator_http, admin) -> None:
    start = await events_position(stack)
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    notifier = stack.part("notifier")
    await stack.stop_part(notifier)
    try:
        await kill_grant(stack, emulator_http, principal)
        await queue_jobs(stack, tenant_id, 200, f"down-{uuid.uuid4().hex[:6]}")

        async def all_failed() -> bool:
            return len(await job_outcomes(stack, tenant_id, start)) >= 200

        # Every event the notifier must not lose is on the stream while it is down.
        await eventually(all_failed, within=60, what="the 200 jobs to fail while the notifier is down")
    finally:
        await stack.restart_part(notifier)
    [alert] = await eventually(
        lambda: dead_grant_alerts(admin, tenant_id), what="the alert after the restart"
    )
    await eventually(lambda: notifier_caught_up(stack), within=60, what="the notifier to read every event")
    await stack.restart_part(notifier)  # again, with the events already taken
    await eventually(lambda: notifier_caught_up(stack), within=60, what="the restarted notifier to catch up")
    assert [a["alert_id"] for a in await alerts(admin, tenant_id)] == [alert["alert_id"]]
    assert len(await raised_events(stack, tenant_id, start)) == 1


class Receiver:
    """A webhook endpoint on a free port, which can be down (nothing listening) and up."""

    def __init__(self) -> None:
        import contextlib

        from fastapi import FastAPI, Request
        from fleetmail_devkit.ports import free_port

        self.port = free_port()
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.server = None
        self.task = None
        self._nullcontext = contextlib.nullcontext
        api = FastAPI()

        @api.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.calls.append((dict(request.headers), await request.body()))
            return {"ok": True}

        self.api = api

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def up(self) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(self.api, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.server.capture_signals = self._nullcontext  # the test's loop keeps its signals
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(200):
            if self.server.started:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the webhook receiver did not start")

    async def down(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await self.task
            self.server = None

    def valid(self, secret: str) -> list[dict]:
        """The calls whose signature checks out, as JSON."""
        import hashlib
        import hmac

        found = []
        for headers, body in self.calls:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-fleetmail-signature"], expected), "bad signature"
            found.append({"event": headers["x-fleetmail-event"], **json.loads(body)})
        return found


async def tenant_with_webhook(stack, emulator_http, admin, receiver: Receiver) -> tuple[object, str]:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id

    # The new tenant's prompt to sign in is resolved by the sign-in, before the webhook is
    # set: the receiver is to see only what follows.
    async def none_open() -> bool:
        return await notifier_caught_up(stack) and await alerts(admin, tenant_id) == []

    await eventually(none_open, within=60, what="the notifier to read the sign-in")
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    settings["notifications"] = {"webhooks": [{"url": receiver.url, "name": "ops"}]}
    assert (await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)).status_code == 200
    secret = f"whsec-{uuid.uuid4().hex}"
    await admin.put(f"/v1/admin/tenants/{tenant_id}/credentials", json={"webhook_secret": secret})
    # No wait for the notifier to see them: the KV pushes a stored change to every watcher at
    # once, and the alert comes only after the grant dies, several bus round trips later.
    return principal, secret


@pytest.mark.timeout(300)
async def test_a_webhook_gets_one_signed_call_per_notice(stack, emulator_http, admin) -> None:
    start = await events_position(stack)
    receiver = Receiver()
    await receiver.up()
    try:
        principal, secret = await tenant_with_webhook(stack, emulator_http, admin, receiver)
        await kill_grant(stack, emulator_http, principal)
        await queue_jobs(stack, principal.tenant_id, 50, f"hook-{uuid.uuid4().hex[:6]}")

        async def raised() -> list[dict]:
            return [c for c in receiver.valid(secret) if c["event"] == "alert.raised"]

        [call] = await eventually(raised, what="the raised notice")
        assert (
            call["cause"] == "administrator_reauthorization_required"
            and call["tenant_id"] == principal.tenant_id
        )

        # Once each, however many jobs failed: every job ends and every event is read before
        # the grant comes back (a job still failing after that would be a new failure).
        async def all_ended() -> bool:
            return len(await job_outcomes(stack, principal.tenant_id, start)) >= 50

        await eventually(all_ended, within=60, what="the 50 jobs to end")
        await eventually(lambda: notifier_caught_up(stack), within=60, what="the notifier to read them")

        started = (
            await admin.post(f"/v1/admin/tenants/{principal.tenant_id}/tokens/administrator/acquire")
        ).json()
        await emulator_http.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": principal.address},
        )

        async def recovered() -> list[dict]:
            return [c for c in receiver.valid(secret) if c["event"] == "alert.resolved"]

        [notice] = await eventually(recovered, what="the recovered notice")
        assert notice["recovered"].startswith("Recovered") and notice["alert_id"] == call["alert_id"]

        # With every notice in the outbox delivered, the receiver has had all it will get.
        async def all_delivered() -> list[dict]:
            notices = await outbox(stack, principal.tenant_id)
            return notices if all(d["state"] == "delivered" for d in notices) else []

        assert len(await eventually(all_delivered, what="the outbox to be sent")) == 2
        assert len(receiver.calls) == 2
    finally:
        await receiver.down()


@pytest.mark.timeout(180)
async def test_a_receiver_that_is_down_then_up_gets_the_notice_once(stack, emulator_http, admin) -> None:
    receiver = Receiver()  # not listening yet
    principal, secret = await tenant_with_webhook(stack, emulator_http, admin, receiver)
    await kill_grant(stack, emulator_http, principal)

    async def refused_three_times() -> bool:
        notices = await outbox(stack, principal.tenant_id)
        assert len(notices) == 1, f"the outbox holds {notices}"  # none yet, until the alert is raised
        [notice] = notices
        assert notice["state"] == "pending" and notice["last_error"] == "ConnectError", notice
        return notice["attempts"] >= 3  # the test stack's breaker opens at 3

    await eventually(refused_three_times, what="the notice to be refused while the receiver is down")
    await receiver.up()
    try:

        async def delivered() -> list[dict]:
            return receiver.valid(secret)

        [call] = await eventually(delivered, within=40, what="the notice once the receiver is up")
        assert call["event"] == "alert.raised"

        async def done() -> bool:
            return [d["state"] for d in await outbox(stack, principal.tenant_id)] == ["delivered"]

        await eventually(done, what="the outbox to record the delivery")
        assert len(receiver.calls) == 1  # the refused calls were retried, not repeated
    finally:
        await receiver.down()


async def test_a_provider_unreachable_for_a_while_is_an_alert_until_it_answers(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/faults",
        json={"status": 503, "count": 1, "retry_after_s": 1, "grant_type": "refresh_token"},
    )
    [failed] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert failed.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE

    async def unreachable() -> list[dict]:
        return [a for a in await alerts(admin, principal.tenant_id) if a["cause"] == "provider_unreachable"]

    [alert] = await eventually(unreachable, within=20, what="the alert")  # the test stack's threshold is 2 s
    assert "has not answered" in alert["title"] and alert["principal_address"] == principal.address

    async def answered() -> bool:
        # MSAL waits out the Retry-After before it calls the provider again.
        [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
        return reply.outcome is AccessTokenOutcome.GRANTED

    await eventually(answered, within=20, every=0.5, what="the provider to answer again")

    async def gone() -> bool:
        return not await unreachable()

    await eventually(gone, within=20, what="the alert to resolve")


@pytest.mark.timeout(180)
async def test_alert_email_goes_through_the_operator_relay_not_the_dead_grant(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    ops = f"ops@{tenant_id}.example"
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    settings["notifications"] = {"email_recipients": [ops]}
    await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)
    await kill_grant(stack, emulator_http, principal)

    async def mails() -> list[dict]:
        found = (
            await emulator_http.get(
                f"{stack.smtp_control_url}/_emulator/messages", params={"subject_prefix": "[fleetmail]"}
            )
        ).json()
        return [m for m in found if ops in m["rcpt_tos"]]

    async def subjects_starting(prefix: str) -> list[dict]:
        return [m for m in await mails() if m["subject"].startswith(prefix)]

    [raised, *_] = await eventually(
        lambda: subjects_starting("[fleetmail] The administrator"), within=60, what="the alert e-mail"
    )
    assert raised["auth_mechanism"] == "PLAIN/LOGIN"
    assert raised["auth_user"] == "alerts@fleetmail.example"  # the relay, not the tenant's dead grant

    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": started["user_code"], "user": principal.address},
    )
    recovered = await eventually(
        lambda: subjects_starting("[fleetmail] Recovered:"), within=60, what="the recovered e-mail"
    )
    assert recovered[0]["auth_user"] == "alerts@fleetmail.example"


async def test_the_periodic_scan_finds_a_grant_approaching_death_without_any_event(
    stack, emulator_http, admin
) -> None:
    """A Google app in testing mode: its grant dies in 7 days. No token-service sweep runs here
    (its interval is an hour), so only the notifier's own scan can see it."""
    tenant_id, address = await new_tenant(admin, "google")
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    settings["identity"]["google_testing_mode"] = True
    await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)
    started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
    assert (await browser_sign_in(stack, emulator_http, started["authorization_url"])).status_code == 200

    # The test stack scans every 10 s. OAuth on before [Acquire] raised the sign-in prompt,
    # which the sign-in resolves: the scan's alert is the one left open.
    async def only_the_scans_alert() -> list[dict]:
        open_alerts = await alerts(admin, tenant_id)
        assert [a["cause"] for a in open_alerts] == ["grant_expiring"], open_alerts
        return open_alerts

    [alert] = await eventually(only_the_scans_alert, within=40, what="the scan's alert")
    assert alert["cause"] == "grant_expiring" and alert["principal_address"] == address
    expiring = [
        e
        for e in await events(stack, "fleetmail.events.v1.tokens.expiring")
        if e["principal"]["tenant_id"] == tenant_id
    ]
    assert expiring == []  # it came from the scan
