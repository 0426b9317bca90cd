"""job-gateway's per-device token bucket, on an injected clock."""

from job_gateway.ratelimit import RateLimiter, TokenReservation


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


def test_a_reserved_token_is_kept_or_refunded_once() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=2, clock=lambda: now[0])
    first, second = limiter.reserve("d1"), limiter.reserve("d1")
    assert isinstance(first, TokenReservation) and isinstance(second, TokenReservation)
    wait = limiter.reserve("d1")  # both tokens are taken while their jobs are received
    assert isinstance(wait, float) and 0.49 < wait <= 0.5
    first.refund()
    first.refund()  # a second refund (RSET, then the connection lost) gives nothing more
    second.keep()
    second.refund()  # kept: its job was taken in
    assert isinstance(limiter.reserve("d1"), TokenReservation)
    assert not isinstance(limiter.reserve("d1"), TokenReservation)


def test_a_refund_never_lifts_a_device_above_its_burst() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=1, clock=lambda: 0.0)
    reservation = limiter.reserve("d1")
    assert isinstance(reservation, TokenReservation)
    limiter.refund("d1")  # e.g. a refund racing a refill
    reservation.refund()
    assert limiter.take("d1") is None and limiter.take("d1") is not None
