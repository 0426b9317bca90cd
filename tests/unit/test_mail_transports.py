"""The tenant's transport chosen per job with fake ports: a Graph tenant's job goes through the
Graph transport with a token for Graph, a redelivered one found in Sent Items (or in a Gmail
account's sent mail) is not sent again, one whose mailbox cannot be looked up is sent again,
and an API transport needs OAuth 2.0."""

from __future__ import annotations

import pytest
from fleetmail_contracts.jobs import JobFunction, SendScanToEmail
from fleetmail_contracts.tenants import TenantSettings
from fleetmail_contracts.tokens import Principal, PrincipalKind, Provider, TokenResource
from fleetmail_contracts.transports import Transport
from mail_service.adapters.gmail_api import GmailApiDelivery
from mail_service.delivery import LOOKUP_MEMORY, Deliverer
from mail_service.domain.limits import MailboxLimits, mailbox_key
from mail_service.errors import ConfigurationError, TokenNotAccepted, TokenRejected
from mail_service.pacing import MailboxGate, PacingPolicy
from mail_service.ports import Credentials

from tests.fakes.mail import (
    FakeAttachments,
    FakeClock,
    FakeLimitsStore,
    FakeMailServer,
    FakeTenants,
    FakeTokenClient,
    FakeTransport,
)

ADMIN = "admin@acme.example"
GRAPH_TENANT = TenantSettings(
    tenant_id="acme", oauth_enabled=True, administrator_address=ADMIN, transport=Transport.GRAPH
)


class FakeSentItems:
    """Sent Items: `refused` holds the tokens it answers 401 to; `readable` False: it cannot
    tell (a Gmail token with gmail.send only, refused a search with 403)."""

    def __init__(self) -> None:
        self.sent_ids: set[str] = set()
        self.asked: list[str] = []
        self.refused: set[str] = set()
        self.readable = True

    async def sent(self, credentials: Credentials, internet_message_id: str) -> bool | None:
        self.asked.append(internet_message_id)
        if credentials.access_token in self.refused:
            raise TokenRejected("401 InvalidAuthenticationToken: Lifetime validation failed", "the mail API")
        if not self.readable:
            return None
        return internet_message_id in self.sent_ids


GMAIL_TENANT = GRAPH_TENANT.model_copy(update={"provider": Provider.GOOGLE, "transport": Transport.GMAIL_API})
GRAPH_LIMITS = MailboxLimits(concurrent=4, interval_s=0.06, daily_quota=10_000)


class World:
    def __init__(self, tenant: TenantSettings = GRAPH_TENANT) -> None:
        self.tokens = FakeTokenClient()
        self.smtp, self.graph = FakeMailServer(), FakeMailServer()
        self.sent_items = FakeSentItems()
        self.limits = FakeLimitsStore()
        self.clock = clock = FakeClock()
        self.deliverer = Deliverer(
            FakeTenants(tenant),
            self.tokens,
            FakeTransport(self.smtp),
            FakeAttachments(),
            clock,
            {Provider.MICROSOFT: 10_000_000},
            MailboxGate(self.limits, PacingPolicy(horizon_s=20, lease_s=180, place_poll_s=0.5), clock),
            apis={Transport.GRAPH: FakeTransport(self.graph), Transport.GMAIL_API: FakeTransport(self.graph)},
            api_limits={Transport.GRAPH: GRAPH_LIMITS},
            sent_items={Transport.GRAPH: self.sent_items, Transport.GMAIL_API: self.sent_items},
        )

    async def deliver(self, job: SendScanToEmail, redelivered: bool = False):
        tenant = await self.deliverer.tenant(job.tenant_id)
        sender = self.deliverer.sender_of(job, JobFunction.SCAN_TO_EMAIL, tenant)
        return await self.deliverer.deliver(
            job, JobFunction.SCAN_TO_EMAIL, tenant, sender, redelivered=redelivered
        )


def scan(job_id: str = "job-1") -> SendScanToEmail:
    return SendScanToEmail(
        job_id=job_id,
        tenant_id="acme",
        device_id="mfp-01",
        submitted_at=FakeClock()(),
        to=("x@fabrikam.example",),
    )


async def test_a_graph_tenants_job_goes_through_graph_with_a_token_for_graph() -> None:
    world = World()
    world.graph.tokens.add("token-1")
    delivered = await world.deliver(scan())
    assert [r.access_token for r in world.graph.received] == ["token-1"] and world.smtp.received == []
    assert [r.resource for r in world.tokens.requests] == [TokenResource.GRAPH]
    assert delivered.accepted == ("x@fabrikam.example",)
    assert world.sent_items.asked == []  # a first delivery is not looked up


async def test_a_redelivered_job_found_in_sent_items_is_not_sent_again() -> None:
    world = World()
    world.graph.tokens.update({"token-1", "token-2"})
    world.sent_items.sent_ids.add("<job-1@fleetmail>")
    delivered = await world.deliver(scan(), redelivered=True)
    assert world.graph.received == [] and "Sent Items" in delivered.smtp_reply
    await world.deliver(scan("job-2"), redelivered=True)
    assert len(world.graph.received) == 1 and world.sent_items.asked == [
        "<job-1@fleetmail>",
        "<job-2@fleetmail>",
    ]


async def test_an_api_transport_needs_oauth() -> None:
    world = World(GRAPH_TENANT.model_copy(update={"oauth_enabled": False}))
    with pytest.raises(ConfigurationError, match=r"OAuth 2\.0"):
        await world.deliver(scan())


async def test_a_parked_jobs_grant_is_checked_for_the_transports_resource() -> None:
    world = World()
    admin = Principal(tenant_id="acme", kind=PrincipalKind.ADMINISTRATOR, address=ADMIN)
    assert await world.deliverer.has_grant(admin)
    assert [r.resource for r in world.tokens.requests] == [TokenResource.GRAPH]


async def test_a_token_refused_by_the_sent_items_lookup_is_refreshed_once_and_looked_up_again() -> None:
    world = World()
    world.sent_items.refused.add("token-1")
    world.sent_items.sent_ids.add("<job-1@fleetmail>")
    delivered = await world.deliver(scan(), redelivered=True)
    assert "Sent Items" in delivered.smtp_reply and world.graph.received == []
    assert [r.force_refresh for r in world.tokens.requests] == [False, True]


async def test_a_token_refused_twice_by_sent_items_is_a_setting_to_fix_worded_for_graph() -> None:
    world = World()
    world.sent_items.refused.update({"token-1", "token-2"})
    with pytest.raises(TokenNotAccepted) as refused:
        await world.deliver(scan(), redelivered=True)
    assert str(refused.value).startswith("Microsoft Graph refused a token")
    assert "SMTP" not in str(refused.value) and refused.value.remedy
    assert world.graph.received == []


async def test_the_sent_items_lookup_takes_a_turn_of_the_mailbox_but_none_of_its_quota() -> None:
    world = World()
    world.sent_items.sent_ids.add("<job-1@fleetmail>")
    await world.deliver(scan(), redelivered=True)
    state = world.limits.states[mailbox_key("acme", ADMIN)]
    assert state.next_turn > 0 and state.sent == {}


async def test_a_redelivered_gmail_job_found_by_its_message_id_is_recorded_delivered_not_sent_again() -> None:
    world = World(GMAIL_TENANT)
    world.sent_items.sent_ids.add("<job-1@fleetmail>")
    delivered = await world.deliver(scan(), redelivered=True)
    assert world.graph.received == [] and delivered.accepted == ("x@fabrikam.example",)
    assert (
        delivered.smtp_reply
        == "found in the account's sent mail (accepted by the Gmail API before a restart)"
    )
    assert delivered.message_id == "<job-1@fleetmail>"
    assert [r.resource for r in world.tokens.requests] == [TokenResource.GMAIL_API]


async def test_a_gmail_mailbox_that_cannot_be_looked_up_is_sent_again_and_not_asked_again_for_a_while() -> (
    None
):
    world = World(GMAIL_TENANT)
    world.graph.tokens.update({"token-1", "token-2"})
    world.sent_items.sent_ids.add("<job-1@fleetmail>")  # sent before, but the token cannot see it
    world.sent_items.readable = False
    delivered = await world.deliver(scan(), redelivered=True)
    assert len(world.graph.received) == 1 and "found" not in delivered.smtp_reply
    await world.deliver(scan("job-2"), redelivered=True)
    assert len(world.graph.received) == 2 and world.sent_items.asked == ["<job-1@fleetmail>"]

    world.clock.advance(LOOKUP_MEMORY.total_seconds() + 1)
    world.sent_items.readable = True
    world.sent_items.sent_ids.add("<job-3@fleetmail>")
    assert "found" in (await world.deliver(scan("job-3"), redelivered=True)).smtp_reply
    assert len(world.graph.received) == 2


async def test_a_new_grant_for_the_mailbox_ends_the_memory_that_it_cannot_be_looked_up() -> None:
    world = World(GMAIL_TENANT)
    world.graph.tokens.update({"token-1", "token-2"})
    world.sent_items.readable = False
    await world.deliver(scan(), redelivered=True)
    world.deliverer.forget_token("acme", ADMIN.upper())  # a token event: a new sign-in
    world.sent_items.readable = True
    world.sent_items.sent_ids.add("<job-2@fleetmail>")
    assert "found" in (await world.deliver(scan("job-2"), redelivered=True)).smtp_reply
    assert world.sent_items.asked == ["<job-1@fleetmail>", "<job-2@fleetmail>"]


@pytest.mark.parametrize("internet_message_id", ["<a b@fleetmail>", '<x"OR"in:sent@fleetmail>', "<job-1>"])
async def test_a_message_id_gmail_would_not_read_as_one_search_word_is_not_searched(
    internet_message_id: str,
) -> None:
    # Nothing listens on the discard port: a request would fail the test, None is answered first.
    gmail = GmailApiDelivery("https://127.0.0.1:9", None, 5, FakeClock())
    try:
        assert await gmail.sent(Credentials(ADMIN, "token-1"), internet_message_id) is None
    finally:
        await gmail.close()
