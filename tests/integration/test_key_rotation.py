"""Key rotation under live traffic: every grant ends under the new key, no request fails."""

import asyncio
import json
import os
import sys

from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.probes import request_tokens, tenant_with_administrator_grant
from pymongo import AsyncMongoClient

from tests.utils import eventually


async def test_rotate_keys_while_serving(stack, emulator_http) -> None:
    principals = await asyncio.gather(
        *(tenant_with_administrator_grant(stack, emulator_http) for _ in range(3))
    )
    outcomes: list[AccessTokenOutcome] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        turn = 0
        while not stop.is_set():
            principal = principals[turn % len(principals)]
            replies = await request_tokens(stack, principal, 5, force_refresh=turn % 3 == 0)
            outcomes.extend(r.outcome for r in replies)
            turn += 1

    load = asyncio.create_task(traffic())
    await eventually(lambda: outcomes, what="traffic to flow")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "token_service",
        "rotate-keys",
        "--add-key",
        env={**os.environ, **stack.service_env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    served_before = len(outcomes)
    # Traffic goes on under the new key: a few more rounds (forced refreshes among them).
    await eventually(lambda: len(outcomes) >= served_before + 30, what="traffic under the new key")
    stop.set()
    await load
    assert process.returncode == 0, output
    assert "re-encrypted" in output and "every grant and credential is encrypted under key" in output

    keyring = json.loads((stack.data_dir / "keyring.json").read_text())
    assert len(keyring["keys"]) >= 2
    assert outcomes and set(outcomes) == {AccessTokenOutcome.GRANTED}
    mongo: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    try:
        async for grant in mongo["fleetmail_tokens"]["grants"].find({"status": "active"}):
            for sealed in ("refresh_token", "access_token"):
                if grant.get(sealed):  # app-only grants have no refresh token
                    assert grant[sealed]["key_id"] == keyring["current"]
        async for stored in mongo["fleetmail_tokens"]["credentials"].find():
            for secret in ("microsoft_client_secret", "google_service_account", "smtp_password"):
                if stored.get(secret):
                    assert stored[secret]["key_id"] == keyring["current"]
    finally:
        await mongo.close()
    after = await request_tokens(stack, principals[0], 3, force_refresh=True)
    assert {r.outcome for r in after} == {AccessTokenOutcome.GRANTED}
