"""A token bucket per device: a device that runs away cannot flood the fleet's queue.

Kept in the memory of each job-gateway replica (a device talks to one replica per
connection; with N replicas behind a balancer the fleet-wide ceiling is N times the rate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


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

    def wait(self, key: str) -> float | None:
        """What `take` would answer, without taking a token: an edge refuses a device that
        has none left before it reads what the device sends."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        tokens = min(float(self.burst), bucket.tokens + (self.clock() - bucket.updated) * self.rate)
        return None if tokens >= 1 else (1 - tokens) / self.rate

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
