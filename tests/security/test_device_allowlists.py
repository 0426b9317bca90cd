"""Defect 2 of issue 18: device allowlists.

The SMTP listener lets in a device that cannot AUTH by its source address. A tenant's
administrator must not be able to claim another tenant's scanner address (and receive its
scans), break it with an equal claim, or open the listener to the whole Internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import smtplib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fleetmail_devkit.ports import free_port
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


@contextlib.asynccontextmanager
async def _fleet_admin(stack, admin: httpx.AsyncClient, tenant_id: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API as the attacker really is: a tenant administrator, with a fleet_admin key
    scoped to its own tenant (made the way an owner hands one out)."""
    created = await admin.post(
        "/v1/admin/api-keys",
        json={"name": f"it-{uuid.uuid4().hex[:4]}", "role": "fleet_admin", "tenant_ids": [tenant_id]},
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        yield http


async def _register(admin: httpx.AsyncClient, tenant_id: str, cidrs: list[str]) -> httpx.Response:
    return await admin.post(
        f"/v1/admin/tenants/{tenant_id}/devices",
        json={"device_id": f"helo-{uuid.uuid4().hex[:6]}", "allow_cidrs": cidrs},
    )


@pytest.mark.parametrize("attacker_key", ["fleet_admin", "owner"])
async def test_another_tenant_cannot_claim_a_scanner_address(
    stack, emulator_http, admin, attacker_key
) -> None:
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    scanner = _address()
    registered = await _register(admin, victim.tenant_id, [f"{scanner}/32"])
    assert registered.status_code == 201, registered.text
    victim_device = registered.json()["device_id"]

    async with contextlib.AsyncExitStack() as scope:
        api = admin
        if attacker_key == "fleet_admin":
            api = await scope.enter_async_context(_fleet_admin(stack, admin, attacker.tenant_id))
            # Its key does not reach the victim's tenant at all.
            assert (await _register(api, victim.tenant_id, [])).status_code in (403, 404)
        # The same address, written as a range, bare, or IPv4-mapped as a dual-stack socket
        # reports it: refused, without naming whose it is.
        for claim in ([f"{scanner}/32"], [scanner], [f"::ffff:{scanner}"]):
            refused = await _register(api, attacker.tenant_id, claim)
            assert refused.status_code == 409, (claim, refused.text)
            assert victim.tenant_id not in refused.text and victim_device not in refused.text
        # Nor by changing a device it already has.
        own = await _register(api, attacker.tenant_id, [])
        assert own.status_code == 201, own.text
        changed = await api.patch(
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


async def test_another_tenant_cannot_claim_an_ipv6_scanner_address(stack, emulator_http, admin) -> None:
    """The same rules for IPv6, however the address is written. (Registration only: the test
    stack's listener is on 127.0.0.1, so no device sends over IPv6 here.)"""
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    scanner = ipaddress.IPv6Address(f"2001:db8:{random.randint(1, 0xFFFF):x}::{random.randint(1, 0xFFFF):x}")
    registered = await _register(admin, victim.tenant_id, [str(scanner)])
    assert registered.status_code == 201, registered.text
    async with _fleet_admin(stack, admin, attacker.tenant_id) as api:
        for claim in (f"{scanner}/128", scanner.exploded, scanner.exploded.upper()):
            refused = await _register(api, attacker.tenant_id, [claim])
            assert refused.status_code == 409, (claim, refused.text)
        for wide in (f"{scanner}/64", "::/0", "::ffff:0:0/96"):
            refused = await _register(api, attacker.tenant_id, [wide])
            assert refused.status_code == 422, (wide, refused.text)
        assert (await api.get(f"/v1/admin/tenants/{attacker.tenant_id}/devices")).json() == []


async def test_an_address_inside_a_legacy_wide_range_cannot_be_claimed(stack, emulator_http, admin) -> None:
    """A /24 registered while the operator allowed it (here: through a second job-gateway
    whose setting allows /24), then the deployment narrowed to single addresses (the stack's
    own job-gateway). The /24 lets nobody in any more; a /32 inside it must still be refused,
    or it would be the only claim left and receive the legacy scanner's mail."""
    victim = await tenant_with_administrator_grant(stack, emulator_http)
    attacker = await tenant_with_administrator_grant(stack, emulator_http)
    ports = {name: free_port() for name in ("http", "starttls", "tls", "plain")}
    lenient = await stack.add_replica(
        "job-gateway",
        {
            "FLEETMAIL_GATEWAY_MIN_ALLOWLIST_PREFIX_V4": "24",
            "FLEETMAIL_GATEWAY_PORT": str(ports["http"]),
            "FLEETMAIL_GATEWAY_SMTP_STARTTLS_PORT": str(ports["starttls"]),
            "FLEETMAIL_GATEWAY_SMTP_TLS_PORT": str(ports["tls"]),
            "FLEETMAIL_GATEWAY_SMTP_PLAIN_PORT": str(ports["plain"]),
        },
    )
    legacy = ipaddress.IPv4Network(f"{_address()}/24", strict=False)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports['http']}", headers=admin.headers, timeout=30
        ) as before_upgrade:
            registered = await _register(before_upgrade, victim.tenant_id, [str(legacy)])
        assert registered.status_code == 201, registered.text
    finally:
        await stack.stop_part(lenient)

    inside = str(legacy.network_address + 5)
    async with _fleet_admin(stack, admin, attacker.tenant_id) as api:
        for claim in ([inside], [f"::ffff:{inside}"]):
            refused = await _register(api, attacker.tenant_id, claim)
            assert refused.status_code == 409, (claim, refused.text)
        assert (await api.get(f"/v1/admin/tenants/{attacker.tenant_id}/devices")).json() == []
    # The legacy range itself lets nobody in on the narrowed deployment.
    assert (await asyncio.to_thread(_send_from, stack, inside, "legacy"))[0] == 530
    assert (await admin.get(f"/v1/admin/tenants/{attacker.tenant_id}/jobs")).json() == []
    # Give the /24 up, so that other tests' random addresses cannot fall inside it.
    released = await admin.patch(
        f"/v1/admin/tenants/{victim.tenant_id}/devices/{registered.json()['device_id']}",
        json={"allow_cidrs": []},
    )
    assert released.status_code == 200, released.text
