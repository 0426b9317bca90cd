"""mail-service's SMTP transport against the SMTP emulator (started alone, on loopback): the
same contract suite as the fake transport, over STARTTLS with the emulator's own CA."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fleetmail_contracts.tenants import SmtpSecurity, SmtpSettings
from fleetmail_runtime.outbound import LOOPBACK_RANGES, OutboundPolicy
from mail_service.adapters.smtp import SmtpDelivery
from mail_service.ports import Credentials

from tests.contracts.mail import MailTransportContract, message_for
from tests.utils.servers import SmtpEmulator, smtp_emulator_server


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[SmtpEmulator]:
    async with smtp_emulator_server() as running:
        yield running


class EmulatorControl:
    """The contract's `MailServer` over the emulator's control API."""

    def __init__(self, emulator: SmtpEmulator, http: httpx.AsyncClient) -> None:
        self.settings = SmtpSettings(
            host="127.0.0.1", port=emulator.starttls_port, security=SmtpSecurity.STARTTLS
        )
        self.http = http

    async def add_mailbox(self, address: str, password: str) -> None:
        response = await self.http.post(
            "/_emulator/mailboxes", json={"address": address, "password": password}
        )
        response.raise_for_status()

    async def fault(self, stage: str, code: int, text: str) -> None:
        response = await self.http.post(
            "/_emulator/faults", json={"stage": stage, "code": code, "text": text, "count": 1}
        )
        response.raise_for_status()

    async def reject_recipients(self, *addresses: str) -> None:
        response = await self.http.post("/_emulator/settings", json={"rejected_recipients": list(addresses)})
        response.raise_for_status()

    async def recipients_of(self, message_id: str) -> list[list[str]]:
        messages = (await self.http.get("/_emulator/messages")).json()
        return [m["rcpt_tos"] for m in messages if m["message_id"] == message_id]


class TestSmtpDelivery(MailTransportContract):
    @pytest.fixture
    async def transport(self, emulator: SmtpEmulator) -> AsyncIterator[SmtpDelivery]:
        delivery = SmtpDelivery(
            emulator.ca_file,
            timeout_s=10,
            helo_name="fleetmail.test",
            outbound=OutboundPolicy.of(LOOPBACK_RANGES),
        )
        try:
            yield delivery
        finally:
            await delivery.close()

    @pytest.fixture
    async def server(self, emulator: SmtpEmulator) -> AsyncIterator[EmulatorControl]:
        async with httpx.AsyncClient(base_url=emulator.control_url, timeout=10, trust_env=False) as http:
            yield EmulatorControl(emulator, http)


async def test_at_its_defaults_one_mailbox_has_no_more_in_submission_than_exchange_takes(
    emulator: SmtpEmulator,
) -> None:
    """Eight messages of one mailbox at once through a transport left at its defaults: no more
    than Exchange Online's 3 connections, so not one `432 4.3.2`."""
    delivery = SmtpDelivery(
        emulator.ca_file,
        timeout_s=10,
        helo_name="fleetmail.test",
        outbound=OutboundPolicy.of(LOOPBACK_RANGES),
    )
    async with httpx.AsyncClient(base_url=emulator.control_url, timeout=10, trust_env=False) as http:
        control = EmulatorControl(emulator, http)
        address, password = f"scanner-{uuid.uuid4().hex[:6]}@acme.example", f"pw-{uuid.uuid4().hex}"
        await control.add_mailbox(address, password)
        credentials = Credentials(address, password=password)
        messages = [message_for(("x@fabrikam.example",), address) for _ in range(8)]
        try:
            results = await asyncio.gather(
                *(delivery.send(control.settings, credentials, m, r) for _, m, r in messages)
            )
        finally:
            await delivery.close()
        busy = (await http.get("/_emulator/replies", params={"user": address, "code": 432})).json()
    assert busy == [] and all(r.reply.startswith("250") for r in results)
