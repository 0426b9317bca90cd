"""fleetmail's TLS clients negotiate TLS 1.2 or 1.3, whichever the server offers, and are
never TLS 1.3-only (a device set to TLS 1.3 only cannot use OAuth, says its manual): the
identity providers' HTTPS (token-service's provider session) and the SMTP servers (mail-service's
TLS context) each complete a handshake with a server pinned to 1.2 and one pinned to 1.3.
Servers run on loopback with the devkit's local CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fleetmail_devkit.ca import TlsFiles, ensure_local_ca
from fleetmail_runtime.outbound import OutboundPolicy
from mail_service.adapters.smtp import tls_context
from token_service.adapters.http import provider_session

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_local_ca(tmp_path_factory.mktemp("tls"))


class PinnedServer:
    """Answers one HTTP request over TLS of exactly one version; remembers what was negotiated."""

    def __init__(self, version: str) -> None:
        self.version = f"TLSv{version}"
        self.negotiated: list[str] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.negotiated.append(writer.get_extra_info("ssl_object").version())
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@pytest.fixture(params=sorted(VERSIONS))
async def server(request: pytest.FixtureRequest, tls: TlsFiles) -> AsyncIterator[PinnedServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
    context.minimum_version = context.maximum_version = VERSIONS[request.param]
    pinned = PinnedServer(request.param)
    listening = await asyncio.start_server(pinned.handle, "127.0.0.1", 0, ssl=context)
    pinned.port = listening.sockets[0].getsockname()[1]
    try:
        yield pinned
    finally:
        listening.close()
        await listening.wait_closed()


async def test_the_identity_providers_https_takes_tls_1_2_and_1_3(
    server: PinnedServer, tls: TlsFiles
) -> None:
    def call() -> int:
        with provider_session(Path(tls.ca_cert), None, 5, outbound=OutboundPolicy()) as session:
            return session.get(f"https://localhost:{server.port}/").status_code

    assert await asyncio.to_thread(call) == 200
    assert server.negotiated == [server.version]


async def test_the_smtp_client_takes_tls_1_2_and_1_3(server: PinnedServer, tls: TlsFiles) -> None:
    context = tls_context(Path(tls.ca_cert))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.maximum_version is not ssl.TLSVersion.TLSv1_2  # 1.3 stays on offer
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.close()
    assert server.negotiated == [server.version]
