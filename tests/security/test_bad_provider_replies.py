"""A token endpoint that answers with something other than an OAuth reply.

Between fleetmail and the identity provider there may be a proxy or a broken server that
answers in its stead: an HTML error page, nothing, JSON cut off, JSON that is not an object.
The emulators answer so on demand. Whatever came back, the sign-in ends as failed with a
reason an administrator can act on, nothing stays pending, and the next Acquire works; a
refresh is refused as "provider unavailable" (the grant stays good) and the next one works.
"""

from __future__ import annotations

import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import request_tokens

from tests.utils import eventually
from tests.utils.tenants import browser_sign_in, new_tenant

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
UNREADABLE = "could not be read (not an OAuth reply)"
# MSAL replays a 5xx until its Retry-After has passed (60 s without one) and a 400 for 60 s,
# to every sign-in of the same app: the faults here say 1 s, or are of another status.
NOT_JSON = [(502, "html"), (200, "html"), (403, "empty"), (200, "truncated"), (200, "array")]


async def fault(emulator: httpx.AsyncClient, url: str, **plan: object) -> None:
    queued = await emulator.post(f"{url}/_emulator/faults", json={"count": 1, **plan})
    assert queued.status_code == 200, queued.text


async def acquire(admin: httpx.AsyncClient, tenant_id: str, flow: str = "device_code") -> httpx.Response:
    return await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow={flow}")


async def sign_in_ended(admin: httpx.AsyncClient, tenant_id: str, acquisition_id: str) -> dict:
    async def ended() -> dict | None:
        status = (await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{acquisition_id}")).json()
        return status if status["state"] != "pending" else None

    return await eventually(ended, within=20, what="the sign-in to end")


@pytest.mark.parametrize(("status", "body"), NOT_JSON)
async def test_a_device_code_request_answered_by_a_proxy_page_is_refused_with_the_reason(
    stack, emulator_http, admin, status, body
) -> None:
    tenant_id, _ = await new_tenant(admin)
    await fault(
        emulator_http, stack.microsoft_url, status=status, body=body, grant_type="devicecode", retry_after_s=1
    )
    refused = await acquire(admin, tenant_id)
    assert refused.status_code == 409, refused.text
    assert UNREADABLE in refused.json()["detail"] and "proxy" in refused.json()["detail"]

    async def started() -> dict | None:
        again = await acquire(admin, tenant_id)
        return again.json() if again.status_code == 200 else None

    assert (await eventually(started, within=10, what="a new sign-in to start"))["user_code"]


@pytest.mark.parametrize(("status", "body"), [(200, "html"), (400, "truncated"), (200, "array")])
async def test_a_device_code_poll_answered_by_a_proxy_page_ends_the_sign_in(
    stack, emulator_http, admin, status, body
) -> None:
    tenant_id, address = await new_tenant(admin)
    started = (await acquire(admin, tenant_id)).json()
    await fault(
        emulator_http,
        stack.microsoft_url,
        status=status,
        body=body,
        grant_type=DEVICE_CODE_GRANT,
        user_code=started["user_code"],
    )
    ended = await sign_in_ended(admin, tenant_id, started["acquisition_id"])
    assert ended["state"] == "failed" and UNREADABLE in ended["detail"], ended
    # Nothing was left half-done: a new sign-in goes through to a grant.
    again = (await acquire(admin, tenant_id)).json()
    approved = await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": again["user_code"], "user": address},
    )
    assert approved.status_code == 200, approved.text
    assert (await sign_in_ended(admin, tenant_id, again["acquisition_id"]))["state"] == "succeeded"


@pytest.mark.parametrize(
    ("provider", "status", "body"),
    [
        ("microsoft", 403, "html"),
        ("microsoft", 200, "truncated"),
        ("google", 200, "html"),
        ("google", 400, "array"),
    ],
)
async def test_a_code_redemption_answered_by_a_proxy_page_fails_the_sign_in(
    stack, emulator_http, admin, provider, status, body
) -> None:
    tenant_id, _ = await new_tenant(admin, provider)
    url = stack.microsoft_url if provider == "microsoft" else stack.google_url
    started = (await acquire(admin, tenant_id, "authorization_code")).json()
    await fault(emulator_http, url, status=status, body=body, grant_type="authorization_code")
    landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
    assert landed.status_code == 400 and UNREADABLE in landed.text, landed.text
    ended = await sign_in_ended(admin, tenant_id, started["acquisition_id"])
    assert ended["state"] == "failed" and UNREADABLE in ended["detail"]
    again = (await acquire(admin, tenant_id, "authorization_code")).json()
    assert (await browser_sign_in(stack, emulator_http, again["authorization_url"])).status_code == 200
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert [g["status"] for g in grants] == ["active"]


@pytest.mark.parametrize(
    ("provider", "status", "body"),
    [
        ("microsoft", 200, "html"),
        ("microsoft", 403, "empty"),
        ("google", 200, "array"),
        ("google", 403, "html"),
    ],
)
async def test_a_refresh_answered_by_a_proxy_page_is_unavailable_and_the_grant_stays_good(
    stack, emulator_http, admin, provider, status, body
) -> None:
    tenant_id, address = await new_tenant(admin, provider)
    url = stack.microsoft_url if provider == "microsoft" else stack.google_url
    started = (await acquire(admin, tenant_id, "authorization_code")).json()
    assert (await browser_sign_in(stack, emulator_http, started["authorization_url"])).status_code == 200
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)
    await fault(emulator_http, url, status=status, body=body, grant_type="refresh_token")
    [refused] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert refused.outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE and UNREADABLE in (refused.detail or "")
    assert refused.retry_after_s
    # The lease was let go and the grant is not marked dead: the next refresh goes through.
    [granted] = await request_tokens(stack, principal, 1, force_refresh=True)
    assert granted.outcome is AccessTokenOutcome.GRANTED, granted.detail
    grants = (await admin.get(f"/v1/admin/tenants/{tenant_id}/tokens")).json()["grants"]
    assert [g["status"] for g in grants] == ["active"]
