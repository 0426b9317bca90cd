"""What fleetmail accepts as an e-mail address: one rule for the gateway (refused at once
with a 4xx) and mail-service (never written into a header otherwise)."""

from __future__ import annotations

import re

ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
UNSAFE = re.compile(r"[\r\n\x00]")


def is_address(value: str) -> bool:
    return len(value) <= 320 and not UNSAFE.search(value) and ADDRESS.match(value) is not None
