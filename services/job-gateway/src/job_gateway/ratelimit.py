"""A token bucket per device: a device that runs away cannot flood the fleet's queue.

Kept in the memory of each job-gateway replica (a device talks to one replica per
connection; with N replicas behind a balancer the fleet-wide ceiling is N times the rate).

An edge that reads a job before it takes it in (SMTP: MAIL FROM, then the message) takes the
token first (`reserve`) and gives it back if no job comes of it: a device with one token
left cannot have a hundred messages read at once, each let through because the others had
not yet taken theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float | None:
        """None when allowed; otherwise the seconds until the next token."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > 100_000:  # forget the oldest idle devices
                for stale in sorted(self._buckets, key=lambda k: self._buckets[k].updated)[:10_000]:
                    del self._buckets[stale]
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate

    def refund(self, key: str) -> None:
        """A token taken for a job that did not come: the device's again."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1)

    def reserve(self, key: str) -> TokenReservation | float:
        """A token taken ahead of its job, or the seconds until the next one."""
        wait = self.take(key)
        return TokenReservation(self, key) if wait is None else wait


@dataclass
class TokenReservation:
    """A token taken for a job still being received: `keep()` once the job is taken in,
    `refund()` (once, whatever calls it) when the job does not come."""

    limiter: RateLimiter
    key: str
    settled: bool = field(default=False)

    def keep(self) -> None:
        self.settled = True

    def refund(self) -> None:
        if not self.settled:
            self.settled = True
            self.limiter.refund(self.key)
