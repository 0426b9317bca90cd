"""mail-service's in-memory fakes pass the same contract suites as the real adapters."""

from __future__ import annotations

import email
import email.policy

import pytest
from fleetmail_contracts.tenants import SmtpSettings

from tests.contracts.mail import (
    PARK_TIMEOUT,
    DeliveryLedgerContract,
    EventPublisherContract,
    MailTransportContract,
    ParkingContract,
)
from tests.fakes.mail import (
    FakeClock,
    FakeEventPublisher,
    FakeLedger,
    FakeMailServer,
    FakeParking,
    FakeTransport,
)


class TestFakeEventPublisher(EventPublisherContract):
    @pytest.fixture
    def publisher(self) -> FakeEventPublisher:
        return FakeEventPublisher()

    @pytest.fixture
    def read_events(self, publisher: FakeEventPublisher):
        async def read(job_id: str):
            return [e for e in publisher.events if e.job_id == job_id]

        return read

    @pytest.fixture
    def read_dead_letters(self, publisher: FakeEventPublisher):
        async def read(dead_letter_id: str):
            return [d for d in publisher.dead_letters if d.dead_letter_id == dead_letter_id]

        return read


class TestFakeLedger(DeliveryLedgerContract):
    @pytest.fixture
    def ledger(self) -> FakeLedger:
        return FakeLedger()


class FakeServerControl:
    """The contract's `MailServer` over a `FakeMailServer`."""

    settings = SmtpSettings(host="smtp.fake.test", port=587)

    def __init__(self, state: FakeMailServer) -> None:
        self.state = state

    async def add_mailbox(self, address: str, password: str) -> None:
        self.state.mailboxes[address.casefold()] = password

    async def fault(self, stage: str, code: int, text: str) -> None:
        self.state.faults.append((stage, code, text))

    async def reject_recipients(self, *addresses: str) -> None:
        self.state.rejected_recipients |= {a.casefold() for a in addresses}

    async def recipients_of(self, message_id: str) -> list[list[str]]:
        return [
            list(r.recipients)
            for r in self.state.received
            if email.message_from_bytes(r.raw, policy=email.policy.default)["Message-ID"] == message_id
        ]


class TestFakeTransport(MailTransportContract):
    @pytest.fixture
    def transport(self) -> FakeTransport:
        return FakeTransport(FakeMailServer())

    @pytest.fixture
    def server(self, transport: FakeTransport) -> FakeServerControl:
        return FakeServerControl(transport.server)


class TestFakeParking(ParkingContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def parking(self, clock: FakeClock) -> FakeParking:
        return FakeParking(clock, PARK_TIMEOUT)
