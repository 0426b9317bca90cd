"""The pure pieces of submission limits: a body counted as it streams (and refused when it
stops), a tenant's and a device's bytes in flight (held by HTTP bodies, and by SMTP DATA as
it is spooled and parsed), the size of an upload."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest
from job_gateway.errors import BodyReadTimeout, SubmissionTooLarge, TooManyAttachments, TooManyBytesInFlight
from job_gateway.smtp_data import DataSpool
from job_gateway.smtp_message import read_message
from job_gateway.submission_limits import (
    BytesInFlight,
    Hold,
    check_attachment_count,
    check_declared,
    check_submission_size,
    limited,
    size_of,
)
from starlette.datastructures import UploadFile

IDLE_S = 30


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
    with in_flight.hold("t1", "d1") as hold:
        body = limited(aiter(Chunks(b"a" * 40, b"b" * 40)), 80, hold, IDLE_S)
        passed = [chunk async for chunk in body]
        assert b"".join(passed) == b"a" * 40 + b"b" * 40
        assert in_flight.held("t1") == 80 and in_flight.held("t1", "d1") == 80
    assert in_flight.held("t1") == 0 and in_flight.held("t1", "d1") == 0


async def test_a_body_over_the_limit_stops_at_the_chunk_that_passes_it() -> None:
    body = Chunks(b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 40)
    passed: list[bytes] = []
    in_flight = BytesInFlight(1000)
    with in_flight.hold("t1", "d1") as hold, pytest.raises(SubmissionTooLarge, match="at most 100 bytes"):
        async for chunk in limited(aiter(body), 100, hold, IDLE_S):
            passed.append(chunk)
    assert passed == [b"a" * 40, b"b" * 40]
    assert body.read == 3  # the fourth chunk was never asked for
    assert in_flight.held("t1") == 0


def test_a_declared_size_over_the_limit_is_refused_and_one_within_it_holds_nothing() -> None:
    with pytest.raises(SubmissionTooLarge):
        check_declared(101, 100)
    check_declared(None, 100)  # chunked: counted as it arrives
    check_declared(100, 100)


async def test_only_what_has_arrived_is_held_as_the_body_streams() -> None:
    in_flight = BytesInFlight(100)
    with in_flight.hold("t1", "d1") as hold:
        body = limited(aiter(Chunks(b"x" * 30, b"y" * 50)), 100, hold, IDLE_S)
        assert in_flight.held("t1") == 0  # a declared size is a promise, not bytes
        assert await anext(body) == b"x" * 30
        assert in_flight.held("t1") == 30
        assert await anext(body) == b"y" * 50
        assert in_flight.held("t1") == 80


async def test_a_body_that_stops_arriving_is_refused_and_lets_its_bytes_go() -> None:
    in_flight = BytesInFlight(100)
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"x" * 30
        await never.wait()
        yield b"never"

    with pytest.raises(BodyReadTimeout, match=r"nothing of the body arrived for 0\.05 s"):
        with in_flight.hold("t1", "d1") as hold:
            async for _chunk in limited(stalled(), 100, hold, 0.05):
                assert in_flight.held("t1") == 30
    assert in_flight.held("t1") == 0


async def test_a_body_that_keeps_trickling_is_refused_at_its_deadline() -> None:
    in_flight = BytesInFlight(100)

    async def trickle() -> AsyncIterator[bytes]:
        while True:
            yield b"x"
            await asyncio.sleep(0.01)  # the client's pace, not a synchronisation

    with pytest.raises(BodyReadTimeout, match=r"took more than 0\.2 s"):
        with in_flight.hold("t1", "d1") as hold:
            async for _chunk in limited(trickle(), 100_000, hold, 5, deadline_s=0.2):
                assert in_flight.held("t1") > 0
    assert in_flight.held("t1") == 0


def test_a_tenant_past_its_share_waits_and_other_tenants_do_not() -> None:
    in_flight = BytesInFlight(100)
    with in_flight.hold("t1", "d1") as first:
        first.grow_to(70)
        with in_flight.hold("t1", "d2") as second:
            second.grow_to(30)
            with pytest.raises(TooManyBytesInFlight, match="this tenant's") as refused:
                second.grow_to(31)
            assert refused.value.retry_after_s >= 1
            assert in_flight.held("t1") == 100  # the refused hold keeps what it had
            assert second.size == 30
        assert in_flight.held("t1") == 70
        with in_flight.hold("t2", "d1") as other:  # device ids are per tenant
            other.grow_to(100)
        with in_flight.hold("t1", "d3") as third:
            third.grow_to(30)
    assert in_flight.held("t1") == 0 and in_flight.held("t2") == 0


def test_one_device_cannot_take_its_tenants_whole_share() -> None:
    in_flight = BytesInFlight(100, device_limit=60)
    with in_flight.hold("t1", "greedy") as first, in_flight.hold("t1", "greedy") as second:
        first.grow_to(40)
        second.grow_to(20)
        with pytest.raises(TooManyBytesInFlight, match="this device's"):
            second.grow_to(21)
        assert in_flight.held("t1", "greedy") == 60
        with in_flight.hold("t1", "polite") as other:
            other.grow_to(40)  # the rest of the tenant's share is its other devices'
            assert in_flight.held("t1") == 100
    assert in_flight.held("t1") == 0 and in_flight.held("t1", "greedy") == 0


def test_a_submission_that_alone_passes_the_device_share_can_never_be_taken_in() -> None:
    in_flight = BytesInFlight(100, device_limit=60)
    with in_flight.hold("t1", "d1") as hold:
        hold.grow_to(60)
        with pytest.raises(SubmissionTooLarge, match="at most 60 bytes"):
            hold.grow_to(61)
        assert in_flight.held("t1") == 60
    assert BytesInFlight(100, device_limit=500).device_limit == 100  # never more than the tenant's


def test_a_hold_is_released_when_its_submission_fails_and_cannot_grow_again() -> None:
    in_flight = BytesInFlight(100)
    with pytest.raises(RuntimeError), in_flight.hold("t1", "d1") as hold:
        hold.grow_to(50)
        raise RuntimeError("storing failed")
    assert in_flight.held("t1") == 0 and hold.size == 0
    # A parse still running after its connection went cannot take bytes that are never given back.
    with pytest.raises(TooManyBytesInFlight, match="given up"):
        hold.grow_to(10)
    hold.release()  # twice: nothing more is given back
    assert in_flight.held("t1") == 0


def test_holds_grown_from_threads_add_up_exactly() -> None:
    in_flight = BytesInFlight(10_000_000)
    holds = [Hold(in_flight, "t1", f"d{n}") for n in range(8)]

    def grow(hold: Hold) -> None:
        for size in range(1, 10_001):
            hold.grow_to(size)

    threads = [threading.Thread(target=grow, args=(hold,)) for hold in holds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert in_flight.held("t1") == 80_000
    for hold in holds:
        hold.release()
    assert in_flight.held("t1") == 0


def test_smtp_data_is_held_as_it_is_spooled_and_dropped_once_refused() -> None:
    in_flight = BytesInFlight(100, device_limit=100)
    with in_flight.hold("t1", "other") as other:
        other.grow_to(50)
        with in_flight.hold("t1", "d1") as hold:
            spool = DataSpool(None, threshold=1024, hold=hold)
            assert not spool.feed(b"x" * 30 + b"\r\n")
            assert in_flight.held("t1", "d1") == 32
            assert not spool.feed(b"y" * 30 + b"\r\n")  # 64 + 50 > 100
            assert isinstance(spool.refusal, TooManyBytesInFlight)
            assert spool.file.closed  # the spooled part goes at once, and its hold with it
            assert in_flight.held("t1", "d1") == 0 and hold.released
            assert not spool.feed(b"z" * 500 + b"\r\n")  # the rest is read and dropped
            assert spool.feed(b".\r\n")
            assert in_flight.held("t1", "d1") == 0
        assert in_flight.held("t1") == 50


def test_smtp_data_that_alone_passes_the_device_share_is_too_large() -> None:
    in_flight = BytesInFlight(100, device_limit=50)
    with in_flight.hold("t1", "d1") as hold:
        spool = DataSpool(None, threshold=1024, hold=hold)
        assert not spool.feed(b"x" * 60 + b"\r\n")
        assert isinstance(spool.refusal, SubmissionTooLarge)
        assert in_flight.held("t1") == 0


def test_the_decoded_parts_of_a_message_are_told_as_they_are_written() -> None:
    message = EmailMessage()
    message["Subject"] = "scan"
    message.set_content("hello")
    message.add_attachment(b"%PDF" + b"\0" * 3000, maintype="application", subtype="pdf", filename="a.pdf")
    raw = message.as_bytes().replace(b"\n", b"\r\n")
    told: list[int] = []
    read = read_message(io.BytesIO(raw), 1024, told.append)
    try:
        assert told == sorted(told) and told[-1] == len("hello\r\n") + 3004
        assert read.attachments[0].size == 3004
    finally:
        read.close()

    def full(size: int) -> None:
        if size > 1000:
            raise TooManyBytesInFlight("full")

    with pytest.raises(TooManyBytesInFlight):
        read_message(io.BytesIO(raw), 1024, full)


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
