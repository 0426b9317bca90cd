"""Refresh happens once at a time per grant, in a process and across replicas, and loses nothing."""

import asyncio

import httpx
import pytest
from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.ports import free_port
from fleetmail_devkit.probes import (
    request_tokens,
    set_access_token_lifetime,
    tenant_with_administrator_grant,
    token_endpoint_calls,
    try_request_tokens,
)

from tests.utils import eventually

# The refresh falls due after half of it (the margin is capped at half the lifetime). Long
# enough that a burst of 200 requests on a loaded machine ends before the *refreshed* token
# falls due in turn (at 6 s, CI once saw a second refresh inside one burst).
LIFETIME_S = 10


@pytest.fixture
async def short_lived_tokens(stack, emulator_http):
    await set_access_token_lifetime(stack, emulator_http, LIFETIME_S)
    yield
    await set_access_token_lifetime(stack, emulator_http, 3600)


async def wait_until_due() -> None:
    await asyncio.sleep(LIFETIME_S / 2 + 0.3)


async def test_200_concurrent_requests_for_an_expired_grant_make_one_call(
    stack, emulator_http, short_lived_tokens
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    await wait_until_due()
    before = await token_endpoint_calls(stack, emulator_http)
    replies = await request_tokens(stack, principal, 200)
    assert {r.outcome for r in replies} == {AccessTokenOutcome.GRANTED}
    assert len({r.access_token for r in replies}) == 1
    assert await token_endpoint_calls(stack, emulator_http) - before == 1


async def answered(http: httpx.AsyncClient, metrics_url: str) -> float:
    """How many token requests a token-service process has answered (its scrape endpoint)."""
    text = (await http.get(metrics_url)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fleetmail_token_requests_total{")
    )


async def test_two_replicas_still_make_one_call_and_lose_no_refresh_token(
    stack, emulator_http, short_lived_tokens
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    replica_port = free_port()
    replica = await stack.add_replica("token-service", {"FLEETMAIL_METRICS_PORT": str(replica_port)})
    scrape = {
        "first": stack.metrics_url("token-service"),
        "second": f"http://127.0.0.1:{replica_port}/metrics",
    }
    try:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            for _ in range(2):
                await wait_until_due()
                before = await token_endpoint_calls(stack, emulator_http)
                served_before = {name: await answered(http, url) for name, url in scrape.items()}
                replies = await request_tokens(stack, principal, 200)
                assert {r.outcome for r in replies} == {AccessTokenOutcome.GRANTED}
                assert await token_endpoint_calls(stack, emulator_http) - before == 1
                # Both replicas answered some of the 200: the one call was shared across them.
                for name, url in scrape.items():
                    assert await answered(http, url) > served_before[name], (
                        f"the {name} replica answered none"
                    )
        # A rotation race: both replicas are told their token was refused, at once.
        before = await token_endpoint_calls(stack, emulator_http)
        forced = await request_tokens(stack, principal, 50, force_refresh=True)
        assert {r.outcome for r in forced} == {AccessTokenOutcome.GRANTED}
        assert await token_endpoint_calls(stack, emulator_http) - before <= 2
        # The rotated refresh token that was stored still works.
        await wait_until_due()
        after = await request_tokens(stack, principal, 10)
        assert {r.outcome for r in after} == {AccessTokenOutcome.GRANTED}
    finally:
        await stack.stop_part(replica)


async def test_a_replica_killed_between_the_answer_and_the_write_loses_nothing(
    stack, emulator_http, short_lived_tokens
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    faulty = await stack.add_replica("token-service", {"FLEETMAIL_TOKEN_FAULT_EXIT_AFTER_REDEEM": "true"})
    try:
        # Force refreshes until the faulty replica takes one and dies mid-way.
        for _ in range(40):
            await try_request_tokens(stack, principal, 4, force_refresh=True, reply_timeout_s=2)
            if faulty.process is not None and faulty.process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert faulty.process is not None and faulty.process.returncode == 17, "the fault hook never fired"
        # Microsoft does not revoke a refresh token when it rotates it, so the stored one
        # (the one before the lost rotation) still redeems; the dead replica's lease expires.
        await wait_until_due()
        replies = await request_tokens(stack, principal, 20)
        assert {r.outcome for r in replies} == {AccessTokenOutcome.GRANTED}
    finally:
        await stack.stop_part(faulty)


async def test_a_revoked_grant_is_reported_at_once_and_stays_dead(
    stack, emulator_http, short_lived_tokens
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/revoke", json={"user": principal.address}
    )
    await wait_until_due()
    before = await token_endpoint_calls(stack, emulator_http)
    replies = await request_tokens(stack, principal, 20)
    assert {r.outcome for r in replies} == {AccessTokenOutcome.REAUTHORIZATION_REQUIRED}
    again = await request_tokens(stack, principal, 5)
    assert {r.outcome for r in again} == {AccessTokenOutcome.REAUTHORIZATION_REQUIRED}
    assert await token_endpoint_calls(stack, emulator_http) - before == 1


async def test_a_provider_outage_is_transient(stack, emulator_http, short_lived_tokens) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    await wait_until_due()
    before = await token_endpoint_calls(stack, emulator_http)
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/faults",
        json={"status": 503, "count": 1, "retry_after_s": 2, "grant_type": "refresh_token"},
    )
    failed = await request_tokens(stack, principal, 1)
    assert failed[0].outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE
    assert failed[0].retry_after_s is not None and 1 <= failed[0].retry_after_s <= 2
    # MSAL replays the 503 without calling the server until Retry-After has passed: every
    # request until then is refused without a call, and the first one after it is served.
    replayed = await request_tokens(stack, principal, 1)
    assert replayed[0].outcome is AccessTokenOutcome.PROVIDER_UNAVAILABLE

    async def recovered() -> bool:
        [reply] = await request_tokens(stack, principal, 1)
        return reply.outcome is AccessTokenOutcome.GRANTED

    await eventually(recovered, within=10, every=0.3, what="the throttle to pass")
    assert await token_endpoint_calls(stack, emulator_http) - before == 2


async def test_a_grant_idle_for_90_days_needs_reauthorization(
    stack, emulator_http, short_lived_tokens
) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    await emulator_http.post(
        f"{stack.microsoft_url}/_emulator/grants/age", json={"user": principal.address, "days": 91}
    )
    await wait_until_due()
    replies = await request_tokens(stack, principal, 3)
    assert {r.outcome for r in replies} == {AccessTokenOutcome.REAUTHORIZATION_REQUIRED}
    assert "700082" in (replies[0].detail or "")
