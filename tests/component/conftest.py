"""The component tier: one real server per test module (only NATS, or only MongoDB, or the
provider emulators), never the whole stack. Each module that asks gets its own, started once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fleetmail_devkit.stack import Stack, temporary_stack
from pymongo import AsyncMongoClient

from tests.utils.servers import mongodb_server, nats_server


@pytest.fixture(scope="module")
async def nats_url() -> AsyncIterator[str]:
    async with nats_server() as url:
        yield url


@pytest.fixture(scope="module")
async def mongodb_uri() -> AsyncIterator[str]:
    async with mongodb_server() as uri:
        yield uri


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[tuple[AsyncMongoClient[dict[str, Any]], str]]:
    """A client and the name of a database of the test's own, dropped after it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:8]}"
    try:
        yield client, name
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture(scope="module")
async def emulators() -> AsyncIterator[Stack]:
    """The Microsoft, Google and SMTP emulators alone, with their defaults (Microsoft's 5 s
    device-code interval, …): no nats-server, no database, no services."""
    async with temporary_stack("fleetmail-emulators-", emulators_only=True) as running:
        yield running


@pytest.fixture(scope="module")
async def emulator_http(emulators: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=emulators.ssl_context(), timeout=10.0, trust_env=False) as client:
        yield client
