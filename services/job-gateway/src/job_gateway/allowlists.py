"""Source-address allowlists, with no I/O: which ranges a device may claim, whether two
claims overlap, and the in-memory index the SMTP listener finds a device in by its address.

A device that cannot AUTH is let in by its source address, so an address range is as good
as a credential: a range belongs to one device only (a claim overlapping any other
device's, of any tenant, is refused), no range is wider than the operator allows (single
addresses unless `FLEETMAIL_GATEWAY_MIN_ALLOWLIST_PREFIX_V4`/`_V6` say otherwise), and the
whole Internet (`0.0.0.0/0`, `::/0`) never. The index answers only when exactly one device
holds the address: ranges that overlap anyway (stored before these rules, or registered
at the same instant through two replicas) let nobody in rather than the narrower one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import AllowlistOverlap, AllowlistRangeRefused

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
V = TypeVar("V", bound=Hashable)

SETTING = {4: "FLEETMAIL_GATEWAY_MIN_ALLOWLIST_PREFIX_V4", 6: "FLEETMAIL_GATEWAY_MIN_ALLOWLIST_PREFIX_V6"}


@dataclass(frozen=True)
class AllowlistPolicy:
    """The narrowest prefix length a range may have, per IP version (the operator's setting)."""

    min_prefix_v4: int = 32
    min_prefix_v6: int = 128

    def minimum(self, version: int) -> int:
        # /0 is never allowed, whatever the setting says.
        return max(1, self.min_prefix_v4 if version == 4 else self.min_prefix_v6)

    def refusal(self, network: Network) -> str | None:
        """Why this range may not be registered, or None."""
        if network.prefixlen == 0:
            return f"{network} is every address: a device is let in by its own address only"
        minimum = self.minimum(network.version)
        if network.prefixlen < minimum:
            return (
                f"{network} is wider than /{minimum}, the widest range this deployment allows "
                f"(register the device's own address, or ask the operator: {SETTING[network.version]})"
            )
        return None


MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
"""IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`): the IPv4 address, as a dual-stack socket
reports an IPv4 peer."""


def parse(cidr: str) -> Network:
    """The range, normalised; an IPv4-mapped IPv6 range as the IPv4 range it is, so that
    `::ffff:192.0.2.7` and `192.0.2.7` are one address to the overlap check and the index."""
    network = ipaddress.ip_network(cidr, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= MAPPED.prefixlen:
        if network.subnet_of(MAPPED):
            mapped = network.network_address.ipv4_mapped
            assert mapped is not None
            return ipaddress.IPv4Network((mapped, network.prefixlen - MAPPED.prefixlen))
    return network


def address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A peer's address; an IPv4-mapped one as its IPv4 address."""
    found = ipaddress.ip_address(host)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def check_ranges(cidrs: Sequence[str], policy: AllowlistPolicy) -> list[Network]:
    """The ranges, normalised and without repeats, or `AllowlistRangeRefused` saying why."""
    networks: list[Network] = []
    for cidr in cidrs:
        try:
            network = parse(cidr)
        except ValueError:
            raise AllowlistRangeRefused(f"not an address range: {cidr[:60]!r}") from None
        why = policy.refusal(network)
        if why is not None:
            raise AllowlistRangeRefused(why)
        if network not in networks:
            networks.append(network)
    return networks


def overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


def check_unclaimed(wanted: Iterable[Network], others: Iterable[str]) -> None:
    """`AllowlistOverlap` if a wanted range overlaps a range of another device (whose, it
    does not say: the other device may be another tenant's). Every stored range counts,
    also one the policy refuses (stored before it, wider than allowed): the index ignores
    that range, so an address registered inside it would be the only claim the index holds
    and its device would receive the mail of the scanner behind that address."""
    taken = []
    for cidr in others:
        try:
            taken.append(parse(cidr))
        except ValueError:
            continue
    for network in wanted:
        if any(overlaps(network, other) for other in taken):
            raise AllowlistOverlap(
                f"{network} overlaps an address range registered for another device; an address "
                "lets in one device only"
            )


class AllowlistIndex(Generic[V]):
    """Devices by the ranges of their allowlists, for a lookup per SMTP `MAIL` without I/O:
    a dictionary per prefix length in use, so a lookup costs at most one probe per length."""

    def __init__(self, entries: Iterable[tuple[V, Sequence[str]]], policy: AllowlistPolicy) -> None:
        self._by_prefix: dict[tuple[int, int], dict[int, set[V]]] = {}
        self.ignored: list[str] = []
        """Ranges the policy refuses (stored before it, or before the operator narrowed it)."""
        for value, cidrs in entries:
            for cidr in cidrs:
                try:
                    network = parse(cidr)
                except ValueError:
                    self.ignored.append(cidr)
                    continue
                if policy.refusal(network) is not None:
                    self.ignored.append(cidr)
                    continue
                table = self._by_prefix.setdefault((network.version, network.prefixlen), {})
                table.setdefault(int(network.network_address), set()).add(value)
        self._lengths = {
            version: sorted({length for v, length in self._by_prefix if v == version}) for version in (4, 6)
        }

    def lookup(self, host: str) -> V | None:
        """The one device whose allowlist holds this address; None if none does, or several."""
        try:
            peer = address(host)
        except ValueError:
            return None
        bits = peer.max_prefixlen
        found: set[V] = set()
        for length in self._lengths[peer.version]:
            key = (int(peer) >> (bits - length)) << (bits - length)
            found |= self._by_prefix[peer.version, length].get(key, set())
        return next(iter(found)) if len(found) == 1 else None
