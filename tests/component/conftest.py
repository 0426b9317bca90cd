"""The component tier: one real server per test module (only NATS, or only MongoDB), never
the whole stack. Each module that asks for a server gets its own, started once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.utils.servers import mongodb_server, nats_server


@pytest.fixture(scope="module")
async def nats_url() -> AsyncIterator[str]:
    async with nats_server() as url:
        yield url


@pytest.fixture(scope="module")
async def mongodb_uri() -> AsyncIterator[str]:
    async with mongodb_server() as uri:
        yield uri
