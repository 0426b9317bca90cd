"""How many SMTP connections are open, in total and per source, counted from the moment a
connection is accepted: one device (or one address, or one IPv6 network with many
addresses) cannot take every connection the listener can hold.

A source is an IPv4 address, or an IPv6 /64 (what one host is given and rotates within);
an IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.

On the implicit-TLS port the count starts before the handshake (`CountedTls`): asyncio's
own TLS server only tells the protocol once the handshake is done, so a client that
connects and says nothing would hold a socket uncounted until the handshake timed out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("job-gateway.smtp")

IPV6_SOURCE_PREFIX = 64


def source_key(host: str) -> str:
    """The source a connection from `host` is counted against."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a scope (fe80::1%eth0) is no source
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_SOURCE_PREFIX), strict=False))
    return str(address)


def peer_source(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return source_key(str(peer[0])) if peer else ""


class ConnectionLimits:
    """`admit(source)` before a connection is served, `release(source)` when it closes."""

    def __init__(self, total: int, per_source: int) -> None:
        self.total = total
        self.per_source = per_source
        self.open: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # since the source last had none open
        self.count = 0

    def admit(self, source: str) -> str | None:
        """None when the connection may be served; otherwise why not (for the 421 reply)."""
        if self.count >= self.total:
            refusal = "too many connections; try again later"
        elif self.open[source] >= self.per_source:
            refusal = f"too many connections from {source}; try again later"
        else:
            self.open[source] += 1
            self.count += 1
            return None
        self.refused[source] += 1
        # A flood is logged at its first refusal and every 1,000th, not a line each.
        if self.refused[source] % 1000 == 1:
            log.warning(
                "SMTP connection from %s refused: %s (%d so far)", source, refusal, self.refused[source]
            )
        return refusal

    def release(self, source: str) -> None:
        self.count -= 1
        self.open[source] -= 1
        if self.open[source] <= 0:
            del self.open[source]
            self.refused.pop(source, None)


class AdmittedProtocol(Protocol):
    """The SMTP server a counted connection is handed to: it releases `source` when the
    connection it was made for is lost."""

    def admitted(self, source: str) -> None: ...

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...


class CountedTls(asyncio.Protocol):
    """An implicit-TLS connection until its handshake is done: counted at accept (closed at
    once when over the limits: a TLS client cannot read a 421 before its handshake), given
    `handshake_timeout_s` to finish it, then handed to the server `serve()` builds."""

    def __init__(
        self,
        limits: ConnectionLimits,
        context: ssl.SSLContext,
        handshake_timeout_s: float,
        serve: Callable[[], AdmittedProtocol],
        handshakes: set[asyncio.Task[None]],
    ) -> None:
        self.limits = limits
        self.context = context
        self.handshake_timeout_s = handshake_timeout_s
        self.serve = serve
        self.handshakes = handshakes  # held by the listener: a running task needs a reference

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        source = peer_source(transport)
        if self.limits.admit(source) is not None:
            transport.close()
            return
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello is the TLS layer's, not this protocol's
        task = asyncio.get_running_loop().create_task(self._handshake(transport, source))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport, source: str) -> None:
        server = self.serve()  # made now: its time to sign in runs from the accept
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport,
                server,  # type: ignore[arg-type]  # an asyncio protocol, typed by what is used here
                self.context,
                server_side=True,
                ssl_handshake_timeout=self.handshake_timeout_s,
            )
        except BaseException as exc:
            # A failed, timed-out or abandoned handshake: start_tls has closed the socket.
            self.limits.release(source)
            if not isinstance(exc, Exception):
                raise
            log.debug("TLS handshake with %s failed: %r", source, exc)
            return
        if tls is None:  # typeshed's answer for a transport that is already gone
            self.limits.release(source)
            return
        server.admitted(source)  # from here the server releases it, when the connection is lost
        server.connection_made(tls)
