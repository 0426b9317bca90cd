"""token-service benchmarks: request latency with a cached token; refresh calls under a stampede."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import nats
from fleetmail_contracts.tokens import (
    ACCESS_TOKEN_SUBJECT,
    AccessTokenOutcome,
    AccessTokenReply,
    AccessTokenRequest,
)
from fleetmail_devkit.probes import (
    request_tokens,
    set_access_token_lifetime,
    tenant_with_administrator_grant,
    token_endpoint_calls,
)
from fleetmail_devkit.stack import Stack
from nats.aio.msg import Msg

from .figures import Figure

SAMPLES = 2000
STAMPEDE = 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def rpc_latency(stack: Stack, emulator: httpx.AsyncClient) -> list[Figure]:
    """One request at a time, as one mail-service worker asks: token-service vs a bare echo."""
    principal = await tenant_with_administrator_grant(stack, emulator)
    client = await nats.connect(stack.nats_url)
    try:

        async def respond(msg: Msg) -> None:
            await msg.respond(msg.data)

        echo = await client.subscribe("bench.echo", cb=respond)
        payload = AccessTokenRequest(principal=principal).model_dump_json().encode()
        await client.request(ACCESS_TOKEN_SUBJECT, payload, timeout=10)  # warm the cache

        async def measure(subject: str) -> list[float]:
            samples = []
            for _ in range(SAMPLES):
                started = time.perf_counter()
                reply = await client.request(subject, payload, timeout=10)
                samples.append((time.perf_counter() - started) * 1000)
                if subject == ACCESS_TOKEN_SUBJECT:
                    assert (
                        AccessTokenReply.model_validate_json(reply.data).outcome is AccessTokenOutcome.GRANTED
                    )
            return samples

        baseline = await measure("bench.echo")
        token = await measure(ACCESS_TOKEN_SUBJECT)
        await echo.unsubscribe()
    finally:
        await client.close()
    return [
        Figure(
            "token.rpc_p50_ms",
            statistics.median(token),
            "ms",
            "nats_echo_p50_ms",
            statistics.median(baseline),
        ),
        Figure(
            "token.rpc_p99_ms", percentile(token, 0.99), "ms", "nats_echo_p99_ms", percentile(baseline, 0.99)
        ),
    ]


async def refresh_stampede(stack: Stack, emulator: httpx.AsyncClient) -> list[Figure]:
    """1,000 concurrent callers over two replicas when the token falls due: calls to the provider."""
    lifetime = 8
    await set_access_token_lifetime(stack, emulator, lifetime)
    replica = await stack.add_replica("token-service")
    try:
        principal = await tenant_with_administrator_grant(stack, emulator)
        await asyncio.sleep(lifetime / 2 + 0.3)
        before = await token_endpoint_calls(stack, emulator)
        replies = await request_tokens(stack, principal, STAMPEDE)
        calls = await token_endpoint_calls(stack, emulator) - before
        assert {r.outcome for r in replies} == {AccessTokenOutcome.GRANTED}
    finally:
        await stack.stop_part(replica)
        await set_access_token_lifetime(stack, emulator, 3600)
    return [Figure("token.refresh_endpoint_calls", calls, "calls", "concurrent_callers (constant)", STAMPEDE)]


async def run(stack: Stack) -> list[Figure]:
    async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=30) as emulator:
        return [*await rpc_latency(stack, emulator), *await refresh_stampede(stack, emulator)]
