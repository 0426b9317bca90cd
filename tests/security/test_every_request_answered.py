"""A request token-service cannot carry out is answered at once, with the reason.

A credentials change that both gives a field and clears it is refused by the gateway (422,
naming the field) and, when it reaches token-service some other way, by token-service
itself. A request that fails in a way no handler foresaw (here: a stored secret that no
longer opens) is answered with an `RpcFailure`, which the gateway says as a problem — never
a reply left unsent for the caller to wait out.
"""

from __future__ import annotations

import nats
from fleetmail_contracts.credentials import SET_CREDENTIALS_SUBJECT, CredentialsView, SetCredentials
from pymongo import AsyncMongoClient

from tests.utils.tenants import confidential_app, new_tenant

REPLY_TIMEOUT_S = 5.0
"""Far below the gateway's own timeout: an answer, not a timeout, is what is asserted."""


async def test_a_credentials_put_that_gives_and_clears_a_field_is_refused_naming_it(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    url = f"/v1/admin/tenants/{tenant_id}/credentials"
    refused = await admin.put(
        url, json={"smtp_password": "p4ss", "clear": ["webhook_secret", "smtp_password"]}
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/invalid-request")
    assert "smtp_password is both given and listed in clear" in problem["detail"]
    assert "p4ss" not in refused.text
    assert (await admin.get(url)).json()["smtp_password"] is False
    stored = await admin.put(url, json={"smtp_username": "scanner", "clear": ["smtp_password"]})
    assert stored.status_code == 200 and stored.json()["smtp_username"] == "scanner"


async def test_token_service_itself_refuses_a_change_that_gives_and_clears_a_field(stack, admin) -> None:
    tenant_id, _ = await new_tenant(admin)
    request = SetCredentials(tenant_id=tenant_id, webhook_secret="w" * 32, clear=("webhook_secret",))
    client = await nats.connect(stack.nats_url)
    try:
        reply = await client.request(
            SET_CREDENTIALS_SUBJECT, request.model_dump_json().encode(), timeout=REPLY_TIMEOUT_S
        )
    finally:
        await client.close()
    view = CredentialsView.model_validate_json(reply.data)
    assert view.error and "webhook_secret is both given and listed in clear" in view.error
    assert view.webhook_secret is False


async def test_a_request_that_fails_unforeseen_is_answered_with_the_reason(
    stack, emulator_http, admin
) -> None:
    tenant_id, _ = await new_tenant(admin)
    client_id, secret = await confidential_app(stack, emulator_http)
    settings = (await admin.get(f"/v1/admin/tenants/{tenant_id}")).json()
    changed = await admin.put(
        f"/v1/admin/tenants/{tenant_id}", json={**settings, "identity": {"client_id": client_id}}
    )
    assert changed.status_code == 200, changed.text
    put = await admin.put(
        f"/v1/admin/tenants/{tenant_id}/credentials", json={"microsoft_client_secret": secret}
    )
    assert put.status_code == 200, put.text
    # The stored secret no longer opens (a record damaged or copied from elsewhere).
    mongo: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    credentials = mongo["fleetmail_tokens"]["credentials"]
    try:
        damaged = await credentials.update_one(
            {"_id": tenant_id}, {"$set": {"microsoft_client_secret.ciphertext": b"\x00" * 48}}
        )
        assert damaged.modified_count == 1
        failed = await admin.post(
            f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=device_code"
        )
    finally:
        # The session's database is shared: a record left damaged stops test_key_rotation's
        # re-encryption of every record, as it would stop an operator's.
        await credentials.delete_one({"_id": tenant_id})
        await mongo.close()
    assert failed.status_code == 502, failed.text
    problem = failed.json()
    assert problem["type"].endswith("/service-failed")
    assert "token-service could not carry out the request" in problem["detail"]
    assert "DecryptionError" in problem["detail"] and secret not in failed.text
    assert "Retry-After" not in failed.headers
