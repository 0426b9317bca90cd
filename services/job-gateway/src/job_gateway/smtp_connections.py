"""How many SMTP connections are open, in total and per source address: one device (or one
address with many) cannot take every connection the listener can hold."""

from __future__ import annotations

from collections import Counter


class ConnectionLimits:
    """`admit(address)` before a connection is served, `release(address)` when it closes."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.open: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # since the address last had none open
        self.count = 0

    def admit(self, address: str) -> str | None:
        """None when the connection may be served; otherwise why not (for the 421 reply)."""
        if self.count >= self.total:
            self.refused[address] += 1
            return "too many connections; try again later"
        if self.open[address] >= self.per_address:
            self.refused[address] += 1
            return f"too many connections from {address}; try again later"
        self.open[address] += 1
        self.count += 1
        return None

    def release(self, address: str) -> None:
        self.count -= 1
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]
            self.refused.pop(address, None)

    def worth_logging(self, address: str) -> bool:
        """A flood is logged at its first refusal and every 1,000th, not a line each."""
        return self.refused[address] % 1000 == 1
