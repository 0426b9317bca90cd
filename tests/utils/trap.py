"""A host an attacker would run, on loopback: an HTTPS listener with a certificate the stack
trusts (so a client that came would get through TLS and send what it carries), counting every
connection and request. A test points a setting at it and asserts nobody came."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fleetmail_devkit.stack import Stack


@dataclass
class Trap:
    url: str
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    """The request lines received ("POST /token HTTP/1.1")."""


async def _serve(trap: Trap, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    trap.connections += 1
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        trap.requests.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        writer.write(b"HTTP/1.1 500 Trap\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def trap(stack: Stack) -> AsyncIterator[Trap]:
    """An HTTPS listener on 127.0.0.1 under the stack's local CA, on a free port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls = stack.data_dir / "tls"
    context.load_cert_chain(tls / "server.pem", tls / "server-key.pem")
    found = Trap(url="")
    server = await asyncio.start_server(
        lambda r, w: _serve(found, r, w), host="127.0.0.1", port=0, ssl=context
    )
    found.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()
