"""One grant, the right resource per request: a Microsoft token has one audience (SMTP or
Graph), so a request for the other resource redeems the grant for it; a Google token serves
every scope of its grant."""

from __future__ import annotations

import asyncio

from fleetmail_contracts.tokens import (
    AccessTokenOutcome,
    AccessTokenRequest,
    Principal,
    PrincipalKind,
    Provider,
    TokenResource,
)
from fleetmail_contracts.transports import resource_of_scopes
from token_service import handlers

from tests.fakes.token import TokenWorld, tenant

ADMIN = Principal(tenant_id="t1", kind=PrincipalKind.ADMINISTRATOR, address="admin@t1.example")


def request(resource: TokenResource = TokenResource.SMTP) -> AccessTokenRequest:
    return AccessTokenRequest(principal=ADMIN, resource=resource)


async def test_smtp_is_the_default_resource_and_its_token_is_not_handed_out_for_graph() -> None:
    world = TokenWorld()
    service = world.replica()
    signed_in = await world.signed_in(ADMIN)

    smtp = await handlers.access_token(service, request())
    assert smtp.access_token == signed_in.access_token and world.identity.calls["refresh"] == 0

    graph = await handlers.access_token(service, request(TokenResource.GRAPH))
    assert graph.outcome is AccessTokenOutcome.GRANTED and graph.access_token != signed_in.access_token
    assert world.identity.resources == [TokenResource.GRAPH]
    again = await handlers.access_token(service, request(TokenResource.GRAPH))
    assert again.access_token == graph.access_token and world.identity.calls["refresh"] == 1
    # The grant keeps one token, the last asked for: SMTP's is redeemed again.
    back = await handlers.access_token(service, request())
    assert back.access_token not in (signed_in.access_token, graph.access_token)
    assert world.identity.resources == [TokenResource.GRAPH, TokenResource.SMTP]


async def test_concurrent_requests_for_two_resources_each_get_their_own() -> None:
    world = TokenWorld()
    service = world.replica()
    await world.signed_in(ADMIN)
    replies = await asyncio.gather(
        *(
            handlers.access_token(service, request(r))
            for r in [TokenResource.GRAPH] * 5 + [TokenResource.SMTP] * 5
        )
    )
    assert {r.outcome for r in replies} == {AccessTokenOutcome.GRANTED}
    graph = {r.access_token for r in replies[:5]}
    smtp = {r.access_token for r in replies[5:]}
    assert len(graph) == 1 and len(smtp) == 1 and graph != smtp


async def test_a_google_token_serves_the_gmail_api_without_a_second_redemption() -> None:
    world = TokenWorld(tenant(provider=Provider.GOOGLE))
    service = world.replica()
    signed_in = await world.signed_in(ADMIN, Provider.GOOGLE)
    reply = await handlers.access_token(service, request(TokenResource.GMAIL_API))
    assert reply.access_token == signed_in.access_token and world.identity.calls["refresh"] == 0


def test_a_grants_own_resource_is_read_from_its_scopes() -> None:
    microsoft, google = Provider.MICROSOFT, Provider.GOOGLE
    assert resource_of_scopes(microsoft, ("https://outlook.office.com/SMTP.Send",)) is TokenResource.SMTP
    assert resource_of_scopes(microsoft, ()) is TokenResource.SMTP
    assert resource_of_scopes(microsoft, ("Mail.Send", "Mail.ReadWrite")) is TokenResource.GRAPH
    assert resource_of_scopes(microsoft, ("https://graph.microsoft.com/Mail.Send",)) is TokenResource.GRAPH
    gmail_send = "https://www.googleapis.com/auth/gmail.send"
    assert resource_of_scopes(google, (gmail_send, "openid")) is TokenResource.GMAIL_API
    assert resource_of_scopes(google, ("https://mail.google.com/",)) is TokenResource.SMTP
