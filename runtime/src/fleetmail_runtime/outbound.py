"""Where a tenant may make fleetmail connect: one rule for every service.

A tenant names destinations (webhook URLs, its SMTP server, its proxy). None of them may be a
loopback, link-local (cloud metadata), private, multicast, reserved, unspecified or other
special-purpose address, unless the operator's `FLEETMAIL_OUTBOUND_ALLOWED_RANGES` (CIDRs)
allows its range — otherwise fleetmail would reach, and report on, the operator's internal
network for a tenant.

The rule is applied where it cannot be dodged: on the resolved addresses, when connecting
(`resolve_allowed` resolves once, checks every address and the caller connects to a checked
address, so a name that resolves differently the second time gains nothing). IPv6 addresses
that carry an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by it too, and a
host written as a number (`2852039166`, `0x7f.1`: forms the system resolver accepts) is the
address it stands for. `refusal_of_host` is the same rule without DNS, for literal addresses
and names that are special by definition, so a setting can be refused when it is saved.

The text of a refusal names the rule and the address, never anything the destination said.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_RANGES_SETTING = "FLEETMAIL_OUTBOUND_ALLOWED_RANGES"
LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")
"""What the devkit and the tests allow: their servers all listen on loopback."""

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IETF_ASSIGNMENTS = ipaddress.IPv4Network("192.0.0.0/24")
"""Special-purpose as a whole (IANA); Python's own table changed across 3.11 patch releases."""
SPECIAL_NAMES = {
    "localhost": ipaddress.IPv4Address("127.0.0.1"),
    "metadata.google.internal": ipaddress.IPv4Address("169.254.169.254"),
    "metadata": ipaddress.IPv4Address("169.254.169.254"),
}
"""Names that mean an internal address wherever they are resolved (RFC 6761, cloud metadata)."""

_NUMERIC_V4 = re.compile(r"^[0-9a-fA-FxX.]+$")


class DestinationRefused(Exception):
    """A destination the operator's rule does not allow; the text is safe to show a tenant."""

    def __init__(self, destination: str, why: str) -> None:
        super().__init__(
            f"destination {destination} {why}; outbound connections there are not allowed by this "
            f"deployment (the operator's {ALLOWED_RANGES_SETTING})"
        )
        self.destination = destination


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as a literal stands for (`[::1]`, `10.0.0.1`, `0x7f.1`,
    `2852039166`), or None when it is a name."""
    text = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not _NUMERIC_V4.match(text) or not text[:1].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, where one is the real destination or a
    hint a relay follows (IPv4-mapped, 6to4, Teredo server and client, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def special_range(address: IPAddress) -> str | None:
    """Which special-purpose range an address is in, in words, or None for a global one."""
    if address.is_unspecified:
        return "is the unspecified address"
    for test, words in (
        (address.is_loopback, "a loopback range"),
        (address.is_link_local, "a link-local range (where cloud metadata services answer)"),
        (address.is_multicast, "a multicast range"),
        (address.is_private, "a private range"),
        (address.is_reserved, "a reserved range"),
        (not address.is_global or address in IETF_ASSIGNMENTS, "a special-purpose range"),
    ):
        if test:
            return f"is in {words}"
    return None


def shown(address: IPAddress, host: str | None) -> str:
    """How a refused destination is named: the address, and the name it came from if any."""
    if host is None or literal_address(host) == address:
        return str(address)
    return f"{host.strip()} ({address})"


@dataclass(frozen=True)
class OutboundPolicy:
    """The special-purpose ranges the operator allows tenants' destinations in (none by default)."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, ranges: Iterable[str]) -> OutboundPolicy:
        return cls(tuple(ipaddress.ip_network(r.strip(), strict=False) for r in ranges))

    def _allows(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.allowed)

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is not allowed, or None when it is."""
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id:
                address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
            inner = embedded_ipv4(address)
            if inner is not None:
                why = self.refusal(inner)
                if why is not None:
                    return f"carries {inner}, which {why}"
                if address.ipv4_mapped is not None:
                    return None  # a mapped address is its IPv4 address
        if self._allows(address):
            return None
        return special_range(address)

    def check_address(self, address: IPAddress, host: str | None = None) -> None:
        """Raise `DestinationRefused` unless a connection to `address` (of `host`) is allowed."""
        why = self.refusal(address)
        if why is not None:
            raise DestinationRefused(shown(address, host), why)

    def refusal_of_host(self, host: str) -> str | None:
        """The rule applied without DNS, for a setting being saved: a literal address, or a name
        that is special wherever it is resolved (`localhost`, `*.localhost`, cloud metadata)."""
        name = host.strip().lower().rstrip(".")
        address = literal_address(name)
        if address is None:
            address = SPECIAL_NAMES.get("localhost" if name.endswith(".localhost") else name)
        if address is None:
            return None
        why = self.refusal(address)
        return None if why is None else str(DestinationRefused(shown(address, host), why))

    def allowed_addresses(self, host: str, infos: Iterable[tuple[object, ...]]) -> list[str]:
        """The checked addresses of a resolution (getaddrinfo's answer): every one must be
        allowed — an answer that mixes a public and an internal address is refused whole."""
        addresses: list[str] = []
        for info in infos:
            sockaddr = info[4]
            assert isinstance(sockaddr, tuple)
            text = str(sockaddr[0])
            self.check_address(ipaddress.ip_address(text.split("%", 1)[0]), host)
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
        return addresses

    async def resolve_allowed(self, host: str, port: int) -> list[str]:
        """The addresses of `host` to connect to, every one checked; `DestinationRefused` when
        one is not allowed, `OSError` (`socket.gaierror`) when the name does not resolve."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        return self.allowed_addresses(host, infos)

    def resolve_allowed_sync(self, host: str, port: int) -> list[str]:
        """`resolve_allowed` for code that runs in a thread (requests)."""
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        return self.allowed_addresses(host, infos)

    async def open_socket(self, host: str, port: int, timeout_s: float) -> socket.socket:
        """A TCP socket connected to a checked address of `host` (the first that answers), for
        libraries that take a connected socket and keep the name for TLS (aiosmtplib)."""
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        async with asyncio.timeout(timeout_s):
            for address in await self.resolve_allowed(host, port):
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, (address, port))
                except OSError as exc:
                    sock.close()
                    last = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
        assert last is not None
        raise last
