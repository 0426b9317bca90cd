"""The suite's one waiting helper says what it waited for when it gives up."""

from __future__ import annotations

import itertools

import pytest

from tests.utils import eventually
from tests.utils.waiting import SLOWEST_CHECK_S, pauses


async def test_it_returns_the_first_truthy_result() -> None:
    calls = iter([None, 0, "found"])
    assert await eventually(lambda: next(calls), within=1, every=0) == "found"


async def test_it_retries_an_async_check_that_asserts() -> None:
    seen: list[int] = []

    async def check() -> int:
        seen.append(1)
        assert len(seen) >= 3, "not yet"
        return len(seen)

    assert await eventually(check, within=1, every=0) == 3


async def test_it_fails_with_the_last_assertion_and_what_it_waited_for() -> None:
    def check() -> None:
        raise AssertionError("the job is still queued")

    with pytest.raises(
        AssertionError, match=r"waited 0\.05 s for the job to be sent: the job is still queued"
    ):
        await eventually(check, within=0.05, every=0.01, what="the job to be sent")


async def test_it_fails_with_the_last_value_when_nothing_asserted() -> None:
    with pytest.raises(AssertionError, match=r"the last check gave \[\]"):
        await eventually(lambda: [], within=0.02, every=0.01)


def test_the_pause_between_checks_grows_from_every_to_the_slowest() -> None:
    waits = pauses(0.1)
    first = [next(waits) for _ in range(12)]
    assert first[0] == 0.1
    assert all(a < b for a, b in itertools.pairwise(first[:5]))
    assert first[-1] == SLOWEST_CHECK_S and max(first) == SLOWEST_CHECK_S


def test_a_longer_every_is_kept_as_it_is() -> None:
    waits = pauses(2.0)
    assert [next(waits) for _ in range(3)] == [2.0, 2.0, 2.0]
