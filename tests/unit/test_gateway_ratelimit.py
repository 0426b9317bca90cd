"""job-gateway's per-device token bucket, on an injected clock."""

from job_gateway.ratelimit import RateLimiter


def test_device_rate_limit_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [limiter.take("d1") for _ in range(3)] == [None, None, None]
    wait = limiter.take("d1")
    assert wait is not None and 0.49 < wait <= 0.5
    assert limiter.take("d2") is None  # another device has its own bucket
    now[0] += 0.5
    assert limiter.take("d1") is None and limiter.take("d1") is not None


def test_an_idle_device_earns_back_no_more_than_its_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("d1")
    now[0] += 3600
    assert [limiter.take("d1") for _ in range(3)] == [None, None, None]
    assert limiter.take("d1") is not None


def test_waiting_asks_without_taking() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=2, clock=lambda: now[0])
    assert limiter.wait("d1") is None  # a device never seen has its whole burst
    limiter.take("d1")
    assert [limiter.wait("d1") for _ in range(5)] == [None] * 5
    limiter.take("d1")
    wait = limiter.wait("d1")
    assert wait is not None and 0.49 < wait <= 0.5
    now[0] += 0.5
    assert limiter.wait("d1") is None and limiter.take("d1") is None
