"""fleetmail against the providers' sending limits, as the SMTP emulator enforces them: each
test has a mailbox (and tenant) of its own, whose limits it shrinks at the emulator and in the
tenant's settings, so the rest of the session keeps the defaults."""

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from fleetmail_devkit.probes import SmtpEmulator, device_panel, events, events_position, smtp_emulator

from tests.integration.test_cli import cli
from tests.utils import eventually
from tests.utils.jobs import final_status, submit


async def limited_tenant(
    stack,
    admin: httpx.AsyncClient,
    emulator: httpx.AsyncClient,
    mailbox: dict,
    sending_limits: dict,
    server: SmtpEmulator | None = None,
) -> tuple[str, str]:
    """A tenant sending as one password mailbox at the SMTP emulator (OAuth 2.0 off: the limits
    are the mailbox's whichever way it signs in), with the limits given: a Microsoft tenant at
    the stack's emulator, a Google one at `server` (Gmail's flavour)."""
    tenant_id = f"limits-{uuid.uuid4().hex[:8]}"
    address = f"scanner@{tenant_id}.example"
    password = f"pw-{uuid.uuid4().hex}"
    answer = await emulator.post(
        f"{control_url(stack, server)}/_emulator/mailboxes",
        json={"address": address, "password": password, **mailbox},
    )
    assert answer.status_code == 200, answer.text
    created = await admin.put(
        f"/v1/admin/tenants/{tenant_id}",
        json={
            "tenant_id": tenant_id,
            "administrator_address": address,
            "provider": "google" if server else "microsoft",
            "smtp": {"host": "127.0.0.1", "port": server.port if server else stack.ports.smtp_starttls},
            "sending_limits": sending_limits,
        },
    )
    assert created.status_code == 200, created.text
    saved = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials",
        json={"smtp_username": address, "smtp_password": password},
    )
    assert saved.status_code in (200, 204), saved.text
    return tenant_id, address


def control_url(stack, server: SmtpEmulator | None) -> str:
    return server.control_url if server else stack.smtp_control_url


async def replies(
    stack, emulator: httpx.AsyncClient, address: str, server: SmtpEmulator | None = None, **params
) -> list[dict]:
    answer = await emulator.get(
        f"{control_url(stack, server)}/_emulator/replies", params={"user": address, **params}
    )
    return answer.json()


async def accepted_from(
    stack, emulator: httpx.AsyncClient, address: str, server: SmtpEmulator | None = None
) -> list[dict]:
    answer = await emulator.get(
        f"{control_url(stack, server)}/_emulator/messages", params={"sender": address}
    )
    return answer.json()


@pytest.fixture(scope="module")
async def gmail_smtp(stack) -> AsyncIterator[SmtpEmulator]:
    async with smtp_emulator(stack, "gmail") as server:
        yield server


async def test_sixty_jobs_from_several_devices_keep_to_the_mailboxs_concurrency_and_rate(
    stack, admin, emulator_http
) -> None:
    # Exchange's 3 in submission at once, and its rate shrunk to 10 a second at both ends.
    tenant_id, address = await limited_tenant(
        stack,
        admin,
        emulator_http,
        {"limits": {"per_minute": 10, "rate_window_s": 1.0}},
        {"messages_per_minute": 600},
    )
    start = await events_position(stack)
    async with AsyncExitStack() as devices:
        panels = [await devices.enter_async_context(device_panel(stack, tenant_id)) for _ in range(3)]
        job = {"function": "scan_to_email", "to": ["boss@fabrikam.example"]}
        job_ids = await asyncio.gather(*(submit(panels[i % 3], job) for i in range(60)))
        statuses = await asyncio.gather(
            *(final_status(panels[i % 3], job_id, seconds=90) for i, job_id in enumerate(job_ids))
        )
    assert Counter(s["status"] for s in statuses) == {"sent": 60}, [
        s for s in statuses if s["status"] != "sent"
    ]
    delivered = Counter(m["message_id"] for m in await accepted_from(stack, emulator_http, address))
    assert len(delivered) == 60 and set(delivered.values()) == {1}
    assert await replies(stack, emulator_http, address, code=432) == []
    paced = [
        e for e in await events(stack, "fleetmail.events.v1.mail.paced", start) if e["tenant_id"] == tenant_id
    ]
    assert paced and all(e["next_attempt_at"] > e["occurred_at"] for e in paced), paced[:3]


@pytest.mark.timeout(400)
async def test_a_thousand_jobs_from_twenty_devices_as_one_microsoft_mailbox_get_no_432(
    stack, admin, emulator_http
) -> None:
    """1,000 jobs from 20 devices, all sent as one Exchange Online mailbox over SMTP: every job
    delivered exactly once, not one `432` (the emulator allows 3 in submission at once, as
    Exchange does, and fleetmail's default is 3), and the pacing shows in the job listing.

    Every setting is the default at both ends but one: the mailbox's rate. Exchange's 30 a
    minute would make this test last 33 minutes, so the emulator's mailbox and fleetmail's
    limit for it are both raised to the same 3,000 a minute (over the real one-minute window).
    fleetmail's limit starts at 60 a minute for the first 20 jobs, so that they are paced
    whatever the machine's speed (at 3,000 a minute a slow machine never queues a job), and is
    raised once the listing has shown them paced.
    """
    rate = 3000
    tenant_id, address = await limited_tenant(
        stack, admin, emulator_http, {"limits": {"per_minute": rate}}, {"messages_per_minute": 60}
    )
    listed_paced: list[dict] = []

    async def paced_in_the_listing() -> bool:
        found = (
            await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs", params={"status": "paced", "limit": 5})
        ).json()
        assert found, "no job shows as paced yet"
        listed_paced.extend(found)
        # And on the command line, with the time each goes (to the second).
        shown = await asyncio.to_thread(
            cli, stack, "jobs", "list", tenant_id, "--status", "paced", "--limit", "5"
        )
        assert shown.exit_code == 0 and re.search(r"paced .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown.output), (
            shown.output
        )
        return True

    async with AsyncExitStack() as devices:
        panels = [await devices.enter_async_context(device_panel(stack, tenant_id)) for _ in range(20)]
        job = {"function": "scan_to_email", "to": ["boss@fabrikam.example"]}
        at_once = asyncio.Semaphore(20)

        async def one(i: int) -> str:
            async with at_once:
                return await submit(panels[i % 20], job)

        # The first 20 at once, one a second: a job shows as paced only until it goes.
        job_ids = await asyncio.gather(*(one(i) for i in range(20)))
        await eventually(paced_in_the_listing, within=60, every=0.5, what="paced jobs in the listing")
        settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
        settings["sending_limits"]["messages_per_minute"] = rate
        raised = await admin.put(f"/v1/admin/tenants/{tenant_id}", json=settings)
        assert raised.status_code == 200, raised.text
        job_ids += await asyncio.gather(*(one(i) for i in range(20, 1000)))

        async def all_sent() -> bool:
            counts = (await admin.get(f"/v1/admin/tenants/{tenant_id}/jobs/summary")).json()["counts"]
            assert counts == {"sent": 1000}, counts
            return True

        await eventually(all_sent, within=300, every=1.0, what="1,000 jobs sent")
    assert len(set(job_ids)) == 1000
    delivered = Counter(m["message_id"] for m in await accepted_from(stack, emulator_http, address))
    assert len(delivered) == 1000 and set(delivered.values()) == {1}
    assert await replies(stack, emulator_http, address, code=432) == []
    # The queue view said when a paced job would go.
    assert all(j["next_attempt_at"] for j in listed_paced), listed_paced


QUOTA_CASES = {
    # fleetmail counts the quota itself: the jobs past it are never sent, so never refused.
    "exchange-counted-by-fleetmail": ("microsoft", True),
    # The provider counts more than fleetmail does (mail sent from the mailbox by people):
    # its quota reply defers the jobs just the same.
    "exchange-refused-by-the-provider": ("microsoft", False),
    "gmail-refused-by-the-provider": ("gmail", False),
}


@pytest.mark.parametrize("flavour,counted", QUOTA_CASES.values(), ids=QUOTA_CASES.keys())
async def test_jobs_past_the_daily_quota_wait_raise_one_alert_and_go_when_the_window_allows(
    stack, admin, emulator_http, gmail_smtp, flavour: str, counted: bool
) -> None:
    """A daily quota of 3 at the emulator (on its own clock, moved a day on below); fleetmail's
    24-hour window is 20 s in the test stack, its own quota 3 or the provider's default."""
    server = gmail_smtp if flavour == "gmail" else None
    tenant_id, address = await limited_tenant(
        stack,
        admin,
        emulator_http,
        {"limits": {"daily": 3}},
        {"messages_per_minute": 600, **({"daily_quota": 3} if counted else {})},
        server,
    )
    async with device_panel(stack, tenant_id) as panel:
        job = {"function": "scan_to_email", "to": ["boss@fabrikam.example"]}
        job_ids = [await submit(panel, job) for _ in range(5)]

        async def two_waiting() -> list[dict]:
            statuses = [(await panel.get(f"/v1/jobs/{j}")).json() for j in job_ids]
            waiting = [s for s in statuses if s["status"] == "waiting_for_quota"]
            assert len(waiting) == 2 and sum(s["status"] == "sent" for s in statuses) == 3, statuses
            return waiting

        waiting = await eventually(two_waiting, within=30, what="three sent, two waiting for quota")
        assert all(s["next_attempt_at"] for s in waiting)
        # The provider's day passes now; fleetmail's window passes on its own (20 s), and may
        # pass before the checks below are done on a loaded machine: the provider's must not
        # still be closed then.
        await emulator_http.post(f"{control_url(stack, server)}/_emulator/clock", json={"advance_s": 86_400})
        if counted:
            # On the command line while they wait (fleetmail's window holds them ~20 s): the
            # listing says when each goes, the queued figure how many wait for quota.
            listed = await asyncio.to_thread(
                cli, stack, "jobs", "list", tenant_id, "--status", "waiting_for_quota"
            )
            assert (
                len(re.findall(r"waiting for quota .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listed.output)) == 2
            ), listed.output
            status = await asyncio.to_thread(cli, stack, "status")
            [row] = [line for line in status.output.splitlines() if tenant_id in line]
            assert "2 (2 quota)" in row, status.output

        async def one_alert() -> dict:
            listed = (
                await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts", params={"include_resolved": "true"})
            ).json()
            [alert] = listed
            return alert

        alert = await eventually(one_alert, within=60, what="the quota alert")
        assert alert["cause"] == "sending_quota_exceeded" and alert["principal_address"] == address
        assert "second" in alert["remedy"] and "High Volume Email" in alert["remedy"]
        assert "Graph" not in alert["remedy"]  # no such transport to switch to
        finals = [await final_status(panel, j, seconds=60) for j in job_ids]
    assert [s["status"] for s in finals] == ["sent"] * 5, finals
    delivered = Counter(m["message_id"] for m in await accepted_from(stack, emulator_http, address, server))
    assert len(delivered) == 5 and set(delivered.values()) == {1}
    refusals = await replies(stack, emulator_http, address, server, code=550 if flavour == "gmail" else 554)
    if counted:
        assert refusals == []  # deferred by fleetmail's own count, never refused
    elif flavour == "gmail":
        assert refusals and all("Daily user sending limit exceeded" in r["text"] for r in refusals)
    else:
        assert refusals and all("SubmissionQuotaExceededException" in r["text"] for r in refusals)
    listed = (
        await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts", params={"include_resolved": "true"})
    ).json()
    assert len(listed) == 1  # one alert for the mailbox, however many jobs waited


async def test_a_message_over_the_mailboxs_size_is_refused_before_upload(stack, admin, emulator_http) -> None:
    tenant_id, address = await limited_tenant(
        stack,
        admin,
        emulator_http,
        {"limits": {"max_message_bytes": 100_000}},
        {"max_message_bytes": 100_000},
    )
    async with device_panel(stack, tenant_id) as panel:
        scan = ("scan.pdf", b"%PDF" + b"\0" * 200_000, "application/pdf")
        job_id = await submit(
            panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"]}, {"files": scan}
        )
        status = await final_status(panel, job_id)
    assert status["status"] == "failed" and status["reason_code"] == "message_too_large", status
    assert "too large for this mailbox" in status["detail"]
    # Refused before anything was sent: the server never saw it.
    assert await accepted_from(stack, emulator_http, address) == []
    assert await replies(stack, emulator_http, address) == []


async def test_recipients_over_the_cap_are_sent_in_parts_each_once(stack, admin, emulator_http) -> None:
    tenant_id, address = await limited_tenant(
        stack, admin, emulator_http, {"limits": {"max_recipients": 2}}, {"recipients_per_message": 2}
    )
    to = [f"r{i}@fabrikam.example" for i in range(5)]
    async with device_panel(stack, tenant_id) as panel:
        job_id = await submit(panel, {"function": "scan_to_email", "to": to})
        status = await final_status(panel, job_id)
    assert status["status"] == "sent", status
    messages = await accepted_from(stack, emulator_http, address)
    assert sorted(r for m in messages for r in m["rcpt_tos"]) == to  # each recipient once
    assert len(messages) == 3 and all(len(m["rcpt_tos"]) <= 2 for m in messages)
    assert await replies(stack, emulator_http, address, code=452) == []


async def test_a_full_mailbox_is_an_alert_naming_sent_items_retention(stack, admin, emulator_http) -> None:
    tenant_id, _ = await limited_tenant(stack, admin, emulator_http, {"full": True}, {})
    async with device_panel(stack, tenant_id) as panel:
        status = await final_status(
            panel, await submit(panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"]})
        )
    assert status["status"] == "failed" and status["reason_code"] == "mailbox_full", status

    async def alert() -> dict:
        [raised] = (await admin.get(f"/v1/admin/tenants/{tenant_id}/alerts")).json()
        return raised

    raised = await eventually(alert, within=60, what="the mailbox-full alert")
    assert raised["cause"] == "mailbox_full" and "Sent Items" in raised["remedy"]
