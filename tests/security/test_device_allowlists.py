"""Defect 2 of issue 18: device allowlists.

The SMTP listener lets in a device that cannot AUTH by its source address. A tenant's
administrator must not be able to claim another tenant's scanner address (and receive its
scans), break it with an equal claim, or open the listener to the whole Internet.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import uuid

import httpx
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils import eventually
from tests.utils.jobs import delivered_with_subject
from tests.utils.smtp import scan


def _address() -> str:
    """A loopback address of this test's own (other tests use 127.0.0.x)."""
    return f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _send_from(stack, source: str, subject: str) -> tuple[int, bytes]:
    """What an old scanner does: HELO, no AUTH, from its own address."""
    with smtplib.SMTP(
        "127.0.0.1", stack.ports.gateway_smtp_lan, source_address=(source, 0), timeout=30
    ) as smtp:
        smtp.helo("old-mfp")
        code, text = smtp.docmd("MAIL FROM:<mfp@contoso.example>")
        if code != 250:
            return code, text
        smtp.rcpt("boss@fabrikam.example")
        return smtp.data(scan(subject=subject).as_string())


async def _register(admin: httpx.AsyncClient, tenant_id: str, cidrs: list[str]) -> httpx.Response:
    return await admin.post(
        f"/v1/admin/tenants/{tenant_id}/devices",
        json={"device_id": f"helo-{uuid.uuid4().hex[:6]}", "allow_cidrs": cidrs},
    )


async def test_another_tenant_cannot_claim_a_scanner_address(stack, emulator_http, admin) -> None:
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    scanner = _address()
    registered = await _register(admin, victim.tenant_id, [f"{scanner}/32"])
    assert registered.status_code == 201, registered.text
    victim_device = registered.json()["device_id"]

    # The same address, and a range holding it: refused, without naming whose it is.
    for claim in ([f"{scanner}/32"], [scanner]):
        refused = await _register(admin, attacker.tenant_id, claim)
        assert refused.status_code == 409, refused.text
        assert victim.tenant_id not in refused.text and victim_device not in refused.text
    # Nor by changing a device it already has.
    own = await _register(admin, attacker.tenant_id, [])
    assert own.status_code == 201
    changed = await admin.patch(
        f"/v1/admin/tenants/{attacker.tenant_id}/devices/{own.json()['device_id']}",
        json={"allow_cidrs": [f"{scanner}/32"]},
    )
    assert changed.status_code == 409, changed.text

    # The victim's scanner still sends, and its scan goes out from the victim's mailbox.
    subject = f"scan {uuid.uuid4().hex[:8]}"
    code, reply = await asyncio.to_thread(_send_from, stack, scanner, subject)
    assert code == 250, reply

    async def sent() -> list | None:
        return await delivered_with_subject(stack, emulator_http, subject) or None

    [(entry, _)] = await eventually(sent, what="the victim's scan")
    assert entry["mail_from"] == victim.address
    jobs = (
        await admin.get(f"/v1/admin/tenants/{victim.tenant_id}/jobs", params={"device_id": victim_device})
    ).json()
    assert len(jobs) == 1
    assert (await admin.get(f"/v1/admin/tenants/{attacker.tenant_id}/jobs")).json() == []


async def test_the_whole_internet_and_wide_ranges_are_refused(stack, emulator_http, admin) -> None:
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    for cidrs in (["0.0.0.0/0"], ["::/0"], ["127.0.0.0/8"], ["10.1.2.0/24"], ["2001:db8::/64"]):
        refused = await _register(admin, attacker.tenant_id, cidrs)
        assert refused.status_code == 422, (cidrs, refused.text)
    assert (await admin.get(f"/v1/admin/tenants/{attacker.tenant_id}/devices")).json() == []
    # So an address nobody registered is not let in.
    code, _ = await asyncio.to_thread(_send_from, stack, _address(), "open relay?")
    assert code == 530


async def test_a_freed_address_can_be_claimed_and_takes_effect_at_once(stack, emulator_http, admin) -> None:
    """The listener's in-memory index follows changes: an address given up by one device is
    no longer let in for it, and may then be registered for another."""
    first = await tenant_with_administrator_grant(stack, emulator_http)
    second = await tenant_with_administrator_grant(stack, emulator_http)
    scanner = _address()
    registered = await _register(admin, first.tenant_id, [f"{scanner}/32"])
    assert registered.status_code == 201
    released = await admin.patch(
        f"/v1/admin/tenants/{first.tenant_id}/devices/{registered.json()['device_id']}",
        json={"allow_cidrs": []},
    )
    assert released.status_code == 200
    assert (await asyncio.to_thread(_send_from, stack, scanner, "released"))[0] == 530
    claimed = await _register(admin, second.tenant_id, [f"{scanner}/32"])
    assert claimed.status_code == 201, claimed.text
    subject = f"moved {uuid.uuid4().hex[:8]}"
    assert (await asyncio.to_thread(_send_from, stack, scanner, subject))[0] == 250

    async def sent() -> list | None:
        return await delivered_with_subject(stack, emulator_http, subject) or None

    [(entry, _)] = await eventually(sent, what="the scan of the address's new device")
    assert entry["mail_from"] == second.address
