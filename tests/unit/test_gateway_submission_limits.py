"""The pure pieces of submission limits: a body counted as it streams, a tenant's bytes in
flight, the size of an upload."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from job_gateway.errors import SubmissionTooLarge, TooManyAttachments, TooManyBytesInFlight
from job_gateway.submission_limits import (
    BytesInFlight,
    check_attachment_count,
    check_declared,
    check_submission_size,
    limited,
    size_of,
)
from starlette.datastructures import UploadFile


class Chunks:
    """A body in chunks that remembers how many it was asked for."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk


async def test_a_body_within_the_limit_passes_whole_and_is_held() -> None:
    in_flight = BytesInFlight(100)
    with in_flight.hold("t1") as hold:
        passed = [chunk async for chunk in limited(aiter(Chunks(b"a" * 40, b"b" * 40)), 80, hold)]
        assert b"".join(passed) == b"a" * 40 + b"b" * 40
        assert in_flight.held("t1") == 80
    assert in_flight.held("t1") == 0


async def test_a_body_over_the_limit_stops_at_the_chunk_that_passes_it() -> None:
    body = Chunks(b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 40)
    passed: list[bytes] = []
    in_flight = BytesInFlight(1000)
    with in_flight.hold("t1") as hold, pytest.raises(SubmissionTooLarge, match="at most 100 bytes"):
        async for chunk in limited(aiter(body), 100, hold):
            passed.append(chunk)
    assert passed == [b"a" * 40, b"b" * 40]
    assert body.read == 3  # the fourth chunk was never asked for
    assert in_flight.held("t1") == 0


def test_a_declared_size_over_the_limit_is_refused_before_anything_is_held() -> None:
    in_flight = BytesInFlight(1000)
    with in_flight.hold("t1") as hold:
        with pytest.raises(SubmissionTooLarge):
            check_declared(101, 100, hold)
        assert in_flight.held("t1") == 0
        check_declared(None, 100, hold)  # chunked: counted as it arrives
        check_declared(60, 100, hold)
        assert in_flight.held("t1") == 60


async def test_a_declared_size_is_held_at_once_and_the_body_adds_nothing_within_it() -> None:
    in_flight = BytesInFlight(100)
    with in_flight.hold("t1") as hold:
        check_declared(80, 100, hold)
        assert [c async for c in limited(aiter(Chunks(b"x" * 30, b"y" * 50)), 100, hold)]
        assert in_flight.held("t1") == 80


def test_a_tenant_past_its_share_waits_and_other_tenants_do_not() -> None:
    in_flight = BytesInFlight(100)
    with in_flight.hold("t1") as first:
        first.grow_to(70)
        with in_flight.hold("t1") as second:
            second.grow_to(30)
            with pytest.raises(TooManyBytesInFlight) as refused:
                second.grow_to(31)
            assert refused.value.retry_after_s >= 1
            assert in_flight.held("t1") == 100  # the refused hold keeps what it had
        assert in_flight.held("t1") == 70
        with in_flight.hold("t2") as other:
            other.grow_to(100)
        with in_flight.hold("t1") as third:
            third.grow_to(30)
    assert in_flight.held("t1") == 0 and in_flight.held("t2") == 0


def test_a_hold_is_released_when_its_submission_fails() -> None:
    in_flight = BytesInFlight(100)
    with pytest.raises(RuntimeError), in_flight.hold("t1") as hold:
        hold.grow_to(50)
        raise RuntimeError("storing failed")
    assert in_flight.held("t1") == 0


def test_uploads_are_counted_and_measured() -> None:
    check_attachment_count(20, 20)
    with pytest.raises(TooManyAttachments, match="at most 20"):
        check_attachment_count(21, 20)
    known = UploadFile(io.BytesIO(b"x" * 10), size=10)
    unknown = UploadFile(io.BytesIO(b"y" * 25))  # as the SMTP edge builds them
    unknown.file.seek(5)
    assert size_of(unknown) == 25 and unknown.file.tell() == 5
    assert check_submission_size([known, unknown], 35) == 35
    with pytest.raises(SubmissionTooLarge):
        check_submission_size([known, unknown], 34)
