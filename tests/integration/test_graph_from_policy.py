"""The From policy over Microsoft Graph: under `login_user_address` a login user's job goes
From that user, sent with the user's own Graph token (their grant, signed in at the device,
redeemed for the Graph resource), never the administrator's."""

import hashlib
import uuid

import httpx
import jwt
from fleetmail_devkit.probes import tenant_with_administrator_grant

from tests.utils.jobs import final_status, received, submit
from tests.utils.mail_apis import GRAPH
from tests.utils.tenants import user_signs_in


async def test_a_login_users_job_goes_from_that_user_with_the_users_graph_token(
    stack, emulator_http, admin
) -> None:
    administrator = await tenant_with_administrator_grant(
        stack, emulator_http, transport="graph", from_policy="login_user_address"
    )
    tenant_id = administrator.tenant_id
    body = (
        await admin.post(f"/v1/admin/tenants/{tenant_id}/devices", json={"device_id": f"d-{tenant_id}"})
    ).json()
    device = (body["device_id"], body["secret"])
    user = f"walk-up-{uuid.uuid4().hex[:4]}@{tenant_id}.example"
    await user_signs_in(stack, emulator_http, device, user)

    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=device, timeout=30) as panel:
        job_id = await submit(
            panel, {"function": "scan_to_email", "to": ["x@fabrikam.example"], "login_user": user}
        )
        status = await final_status(panel, job_id)
    assert status["status"] == "sent" and status["sender"] == user, status
    entry, message = await received(stack, emulator_http, job_id)
    assert entry["auth_mechanism"] == "GRAPH" and entry["auth_user"] == user
    assert message["From"] == user

    issued = (await emulator_http.get(f"{stack.microsoft_url}/_emulator/issued")).json()["access_tokens"]
    [token] = [t for t in issued if hashlib.sha256(t.encode()).hexdigest() == entry["token_sha256"]]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == GRAPH and claims["upn"] == user
    assert "Mail.Send" in claims["scp"].split() and "SMTP.Send" not in claims["scp"].split()
