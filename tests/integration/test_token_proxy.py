"""Every call token-service makes to an identity provider goes through the proxy: the tenant's
own (`proxy_url`, the device's proxy setting), else the service's (`FLEETMAIL_TOKEN_PROXY_URL`).
Device-code and browser sign-ins, refresh and Google's revocation are each watched at a real
CONNECT proxy on loopback that asks for credentials: before each step the proxy drops its
tunnels, so the step's calls must open new ones there. A proxy that refuses or is gone is said
plainly (problem+json, the sign-in's status, the token reply), and its credentials appear in
no answer and no log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome, Principal, PrincipalKind
from fleetmail_devkit.probes import device_panel, request_tokens

from tests.utils import eventually
from tests.utils.proxy import ConnectProxy
from tests.utils.tenants import browser_sign_in, new_tenant

SECRET = "Pr0xy-Secret"
SERVICE_PROXY = "FLEETMAIL_TOKEN_PROXY_URL"


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    async with ConnectProxy(credentials=("site", SECRET)).running() as running:
        yield running


@pytest.fixture(scope="module")
async def service_proxy(stack) -> AsyncIterator[ConnectProxy]:
    """token-service restarted with a service-wide proxy (with credentials), then as it was."""
    async with ConnectProxy(credentials=("fleet", SECRET)).running() as running:
        part = stack.part("token-service")
        before = dict(part.env)
        part.env = {**before, SERVICE_PROXY: running.url}
        await stack.restart_part(part)
        try:
            yield running
        finally:
            part.env = before
            await stack.restart_part(part)


async def through(proxy: ConnectProxy, target_port: int, step: Callable[[], Awaitable[object]]) -> object:
    """Run `step` with every tunnel dropped first; it must have opened one of its own, to the
    provider, through `proxy`."""
    proxy.drop_tunnels()
    before = len(proxy.tunnels)
    result = await step()
    opened = proxy.tunnels[before:]
    # Other tests' tenants share the service's proxy (their keep-alive, their jobs' refreshes):
    # the step's own tunnel is the one to its provider.
    assert f"127.0.0.1:{target_port}" in opened, opened or "the step made no call through the proxy"
    return result


async def sign_in_finished(admin: httpx.AsyncClient, tenant_id: str, acquisition_id: str) -> dict:
    async def finished() -> dict | None:
        status = (await admin.get(f"/v1/admin/tenants/{tenant_id}/acquisitions/{acquisition_id}")).json()
        return status if status["state"] != "pending" else None

    return await eventually(finished, within=30, what="the sign-in to finish")


def no_secret_anywhere(stack, *answers: str) -> None:
    for answer in answers:
        assert SECRET not in answer
    for part in stack.parts:
        assert not [line for line in part.output if SECRET in line], part.name


async def microsoft_through(stack, emulator_http, admin, proxy: ConnectProxy, proxy_url: str | None) -> None:
    tenant_id, address = await new_tenant(admin, "microsoft", proxy_url)
    port = stack.ports.microsoft
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)

    async def start_device_code() -> dict:
        answer = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
        assert answer.status_code == 200, answer.text
        return answer.json()

    started = await through(proxy, port, start_device_code)
    assert isinstance(started, dict) and started["user_code"]

    async def device_code_polled() -> dict:
        approved = await emulator_http.post(
            f"{stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": address},
        )
        assert approved.status_code == 200
        return await sign_in_finished(admin, tenant_id, started["acquisition_id"])

    polled = await through(proxy, port, device_code_polled)
    assert isinstance(polled, dict) and polled["state"] == "succeeded", polled

    async def browser_sign_in_redeemed() -> dict:
        browser = (
            await admin.post(
                f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire?flow=authorization_code"
            )
        ).json()
        landed = await browser_sign_in(stack, emulator_http, browser["authorization_url"])
        assert landed.status_code == 200, landed.text
        return await sign_in_finished(admin, tenant_id, browser["acquisition_id"])

    redeemed = await through(proxy, port, browser_sign_in_redeemed)
    assert isinstance(redeemed, dict) and redeemed["state"] == "succeeded", redeemed

    async def refreshed() -> object:
        [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
        assert reply.outcome is AccessTokenOutcome.GRANTED, reply.detail
        return reply

    await through(proxy, port, refreshed)
    no_secret_anywhere(stack)


async def google_through(stack, emulator_http, admin, proxy: ConnectProxy, proxy_url: str | None) -> None:
    tenant_id, address = await new_tenant(admin, "google", proxy_url)
    port = stack.ports.google
    principal = Principal(tenant_id=tenant_id, kind=PrincipalKind.ADMINISTRATOR, address=address)

    async def browser_sign_in_redeemed() -> dict:
        started = (await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")).json()
        landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
        assert landed.status_code == 200, landed.text
        return await sign_in_finished(admin, tenant_id, started["acquisition_id"])

    redeemed = await through(proxy, port, browser_sign_in_redeemed)
    assert isinstance(redeemed, dict) and redeemed["state"] == "succeeded", redeemed

    async def refreshed() -> object:
        [reply] = await request_tokens(stack, principal, 1, force_refresh=True)
        assert reply.outcome is AccessTokenOutcome.GRANTED, reply.detail
        return reply

    await through(proxy, port, refreshed)

    # A user's grant, deleted with [Delete]: revoked at Google, through the proxy.
    user = f"jo@{tenant_id}.example"
    async with device_panel(stack, tenant_id) as panel:
        started = (await panel.post("/v1/device/sign-ins", json={"user": user})).json()
        landed = await browser_sign_in(stack, emulator_http, started["authorization_url"])
        assert landed.status_code == 200, landed.text
    revocations = (await emulator_http.get(f"{stack.google_url}/_emulator/calls")).json().get("revoke", 0)

    async def deleted() -> object:
        answer = await admin.delete(f"/v1/admin/tenants/{tenant_id}/tokens/users/{user}")
        assert answer.json() == {"deleted": True}, answer.text
        return answer

    await through(proxy, port, deleted)
    calls = (await emulator_http.get(f"{stack.google_url}/_emulator/calls")).json()
    assert calls.get("revoke", 0) == revocations + 1
    no_secret_anywhere(stack)


async def test_microsoft_sign_ins_and_refresh_go_through_the_tenants_proxy(
    stack, emulator_http, admin, proxy
) -> None:
    await microsoft_through(stack, emulator_http, admin, proxy, proxy.url)


async def test_google_sign_in_refresh_and_revocation_go_through_the_tenants_proxy(
    stack, emulator_http, admin, proxy
) -> None:
    await google_through(stack, emulator_http, admin, proxy, proxy.url)


async def test_a_proxy_that_is_gone_or_refuses_is_said_plainly(stack, admin, proxy) -> None:
    # Nothing listens where the proxy was: the sign-in cannot start, and the answer says why.
    gone = ConnectProxy()
    tenant_id, _ = await new_tenant(admin, "microsoft", f"http://site:{SECRET}@127.0.0.1:{gone.port}")
    refused = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
    assert refused.status_code >= 400 and refused.headers["content-type"] == "application/problem+json"
    detail = refused.json()["detail"]
    assert f"proxy http://127.0.0.1:{gone.port} (proxy_url) could not be reached" in detail, detail
    # The proxy asks for credentials the tenant's URL does not carry: a setting to fix.
    wrong_tenant, _ = await new_tenant(admin, "microsoft", f"http://site:wrong@127.0.0.1:{proxy.port}")
    refused = await admin.post(f"/v1/admin/tenants/{wrong_tenant}/tokens/administrator/acquire")
    assert refused.headers["content-type"] == "application/problem+json"
    assert (
        "asks for credentials (HTTP 407)" in refused.json()["detail"]
        and "proxy_url" in refused.json()["detail"]
    )
    assert "Traceback" not in refused.text
    no_secret_anywhere(stack, refused.text)


async def test_microsoft_sign_ins_and_refresh_go_through_the_services_proxy(
    stack, emulator_http, admin, service_proxy
) -> None:
    await microsoft_through(stack, emulator_http, admin, service_proxy, None)


async def test_google_sign_in_refresh_and_revocation_go_through_the_services_proxy(
    stack, emulator_http, admin, service_proxy
) -> None:
    await google_through(stack, emulator_http, admin, service_proxy, None)


async def test_the_tenants_proxy_wins_over_the_services(
    stack, emulator_http, admin, service_proxy, proxy
) -> None:
    # The service's proxy refuses every tunnel: a tenant that used it could not sign in.
    service_proxy.refusing = 403
    try:
        await microsoft_through(stack, emulator_http, admin, proxy, proxy.url)
        # A tenant without a proxy of its own meets the service's refusal, named as such.
        asked = len(service_proxy.asked)
        tenant_id, _ = await new_tenant(admin, "microsoft", None)
        service_proxy.drop_tunnels()  # a tunnel opened before it refused would carry the call
        refused = await admin.post(f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire")
        assert refused.status_code >= 400, refused.text
        detail = refused.json()["detail"]
        assert "refused the tunnel to the identity provider (HTTP 403)" in detail, detail
        assert SERVICE_PROXY in detail and "allow the provider's host at the proxy" in detail
        no_secret_anywhere(stack, refused.text)
        assert len(service_proxy.asked) > asked
    finally:
        service_proxy.refusing = None
