"""An HTTP CONNECT proxy on loopback, as a site's outbound proxy: it tunnels to loopback only,
can ask for credentials, refuse tunnels, and drop the tunnels it holds so that the next call
must open a new one (and be counted)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator

from fleetmail_devkit.ports import free_port

LOOPBACK = "127.0.0.1"


class ConnectProxy:
    """Counts every CONNECT it is asked for (`asked`) and every tunnel it opened (`tunnels`,
    by target). With `credentials`, a CONNECT without them is answered 407; with `refusing`
    set to a status, every CONNECT is answered with it."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.credentials = credentials
        self.refusing: int | None = None
        self.asked: list[str] = []
        self.tunnels: list[str] = []
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        if self.credentials is None:
            return f"http://{LOOPBACK}:{self.port}"
        user, password = self.credentials
        return f"http://{user}:{password}@{LOOPBACK}:{self.port}"

    def drop_tunnels(self) -> None:
        """Close every open tunnel: a pooled connection is gone, the next call asks again."""
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    def _authorized(self, head: bytes) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return f"proxy-authorization: basic {expected}".lower().encode() in head.lower()

    async def _answer(self, writer: asyncio.StreamWriter, status: str) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            await self._answer(writer, "405 Method Not Allowed")
            return
        self.asked.append(target)
        host, port = target.rsplit(":", 1)
        if host != LOOPBACK:  # tests stay on loopback, whatever they are pointed at
            await self._answer(writer, "403 Forbidden")
            return
        if self.refusing is not None:
            await self._answer(writer, f"{self.refusing} Refused By Test")
            return
        if not self._authorized(head):
            await self._answer(writer, "407 Proxy Authentication Required")
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self.tunnels.append(target)
        self._open.update((writer, upstream_writer))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._open.difference_update((writer, upstream_writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ConnectProxy]:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, self.port)
        try:
            yield self
        finally:
            self.drop_tunnels()
            self._server.close()
