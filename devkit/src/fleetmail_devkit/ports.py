"""Loopback ports: find free ones, and say clearly when one is taken.

A port handed out here is bound later by another process, so there is a window in which
someone else can take it. The kernel's own choice (bind to port 0) comes from the ephemeral
range, which is also where every outgoing connection on the machine gets its local port: a
busy test run opens thousands of them, and one landed on a port a stack was about to listen
on (CI, "address already in use"). So ports are drawn at random from *below* the ephemeral
range, which outgoing connections never use, never twice in one process, and each checked
bindable before it is handed out.

Processes that pick ports side by side (parallel test workers) share the range out with
`FLEETMAIL_DEV_PORT_SLICE=<i>/<n>`: each draws only from the i-th of n slices, so two never
hand out the same port.
"""

from __future__ import annotations

import os
import random
import socket
from functools import cache
from pathlib import Path

_LOWEST = 20000  # above the well-known and most registered service ports
_handed_out: set[int] = set()


@cache  # the kernel's setting, read once per process rather than for every port
def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic range, the default on BSD, macOS and Windows


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _slice(lowest: int, top: int) -> tuple[int, int]:
    """This process's part of [lowest, top), from FLEETMAIL_DEV_PORT_SLICE ("i/n"), or all of it."""
    index, _, count = os.environ.get("FLEETMAIL_DEV_PORT_SLICE", "0/1").partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        return lowest, top
    if n < 1 or not 0 <= i < n:
        return lowest, top
    width = (top - lowest) // n
    return lowest + i * width, lowest + (i + 1) * width


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the range outgoing connections use."""
    low, top = _slice(_LOWEST, _ephemeral_start())
    if top - low >= 1000:
        for _ in range(200):
            port = random.randrange(low, top)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a machine with odd settings
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _handed_out.add(port)
    return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
