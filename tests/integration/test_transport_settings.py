"""A tenant's transport (smtp, graph, gmail_api) through the API and the CLI: checked against
the tenant's provider when it is chosen, and what it needs of the administrator's grant stated
in the tenant's token status."""

import asyncio
import uuid

import jwt
import nats
from fleetmail_contracts.tokens import (
    ACCESS_TOKEN_SUBJECT,
    AccessTokenOutcome,
    AccessTokenReply,
    AccessTokenRequest,
    TokenResource,
)
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils.cli import cli
from tests.utils.console import console_http, sign_in


async def test_an_api_transport_of_the_other_provider_is_refused_and_nothing_is_saved(admin) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    body = {"tenant_id": tenant_id, "provider": "google", "transport": "graph"}
    refused = await admin.put(f"/v1/admin/tenants/{tenant_id}", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "needs provider microsoft" in refused.text and "gmail_api" in refused.text
    assert (await admin.get(f"/v1/admin/tenants/{tenant_id}")).status_code == 404

    saved = await admin.put(f"/v1/admin/tenants/{tenant_id}", json=body | {"transport": "gmail_api"})
    assert saved.status_code == 200 and saved.json()["transport"] == "gmail_api"


async def test_choosing_graph_says_the_smtp_grant_lacks_graphs_scopes(stack, emulator_http, admin) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant_id = principal.tenant_id
    run = lambda *args: asyncio.to_thread(cli, stack, *args)  # noqa: E731

    before = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["transport"]
    assert before["transport"] == "smtp" and before["ready"] is True, before

    chosen = await run("tenants", "set", tenant_id, "--transport", "graph")
    assert chosen.exit_code == 0, chosen.output
    assert "transport graph" in chosen.output and "not ready" in chosen.output
    assert "https://graph.microsoft.com/Mail.Send" in chosen.output and "[Acquire]" in chosen.output

    after = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["transport"]
    assert after["ready"] is False and "https://graph.microsoft.com/Mail.ReadWrite" in after["missing"]
    assert "not ready" in (await run("tokens", "status", tenant_id)).output
    assert "graph" in (await run("tenants", "list")).output

    # The console's tenant page says it too, next to the administrator's token.
    async with console_http(stack) as http:
        await sign_in(http, stack.admin_api_key())
        page = (await http.get(f"/console/tenants/{tenant_id}")).text
    said = page.split('data-testid="transport-readiness"')[1].split("</p>")[0]
    assert 'data-ready="false"' in said and "graph" in said and "Mail.ReadWrite" in said, said

    wrong = await run("tenants", "set", tenant_id, "--transport", "gmail_api")
    assert wrong.exit_code == 1 and "needs provider google" in wrong.output
    kept = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    assert kept["transport"] == "graph"


async def graph_token(stack, principal) -> AccessTokenReply:
    client = await nats.connect(stack.nats_url)
    try:
        asked = AccessTokenRequest(principal=principal, resource=TokenResource.GRAPH)
        answer = await client.request(ACCESS_TOKEN_SUBJECT, asked.model_dump_json().encode(), timeout=20)
    finally:
        await client.close()
    return AccessTokenReply.model_validate_json(answer.data)


async def test_a_graph_tenants_sign_in_asks_for_graph_and_its_token_opens_the_mailbox(
    stack, emulator_http, admin
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http, transport="graph")
    status = (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}/tokens")).json()
    assert status["transport"]["ready"] is True, status["transport"]

    reply = await graph_token(stack, principal)
    assert reply.outcome is AccessTokenOutcome.GRANTED and reply.access_token is not None
    claims = jwt.decode(reply.access_token, options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com" and "Mail.Send" in claims["scp"].split()
    found = await emulator_http.get(
        f"{stack.graph_url}/v1.0/me/mailFolders/SentItems/messages",
        params={"$filter": "internetMessageId eq '<none@example>'"},
        headers={"Authorization": f"Bearer {reply.access_token}"},
    )
    assert found.status_code == 200 and found.json()["value"] == [], found.text
