"""What every notifier outbox must do (`notifier.ports.Outbox`), whatever keeps it.

Subclasses provide the fixture `outbox`. Run on the in-memory fake
(`tests/unit/test_outbox_fake.py`) and on MongoDB (`tests/component/test_outbox_mongo.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from notifier.domain.notices import Delivery, delivery, postpone
from notifier.ports import Outbox

T = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def notice(alert_id: str, url: str = "https://hooks.t1.example/a", tenant_id: str = "t1") -> Delivery:
    return delivery(tenant_id, url, "alert.raised", {"alert_id": alert_id, "title": "x"}, at(0))


class OutboxContract:
    @pytest.fixture
    def outbox(self) -> Outbox:
        raise NotImplementedError("a subclass provides the outbox under test")

    async def test_a_notice_put_twice_is_kept_once(self, outbox: Outbox) -> None:
        assert await outbox.put(notice("a1"))
        assert not await outbox.put(notice("a1"))
        [due] = await outbox.due(at(0), 100)
        assert due == notice("a1")

    async def test_each_endpoint_and_transition_is_its_own_delivery(self, outbox: Outbox) -> None:
        await outbox.put(notice("a1"))
        await outbox.put(notice("a1", "mailto:ops@t1.example"))
        await outbox.put(
            delivery("t1", "https://hooks.t1.example/a", "alert.resolved", {"alert_id": "a1"}, at(0))
        )
        assert len(await outbox.due(at(0), 100)) == 3

    async def test_due_gives_pending_deliveries_whose_time_has_come_up_to_the_limit(
        self, outbox: Outbox
    ) -> None:
        for n in range(3):
            await outbox.put(notice(f"a{n}"))
        assert await outbox.due(at(-1), 100) == []
        assert len(await outbox.due(at(0), 2)) == 2
        assert len(await outbox.due(at(0), 100)) == 3

    async def test_a_delivered_notice_is_due_no_more(self, outbox: Outbox) -> None:
        item = notice("a1")
        await outbox.put(item)
        await outbox.delivered(item.delivery_id, at(1))
        assert await outbox.due(at(1000), 100) == []
        assert await outbox.failing("t1") == []

    async def test_a_postponed_notice_waits_and_shows_as_failing(self, outbox: Outbox) -> None:
        item = notice("a1")
        await outbox.put(item)
        await outbox.postponed(
            item.delivery_id, postpone(item, 4, "HTTP 500", at(1), spend=True, max_attempts=3)
        )
        assert await outbox.due(at(4), 100) == []
        [again] = await outbox.due(at(5), 100)
        assert (again.attempts, again.last_error, again.state) == (1, "HTTP 500", "pending")
        [failing] = await outbox.failing("t1")
        assert failing.delivery_id == item.delivery_id
        assert await outbox.failing("t2") == []

    async def test_a_throttled_notice_spends_no_attempt_and_is_not_failing(self, outbox: Outbox) -> None:
        item = notice("a1")
        await outbox.put(item)
        await outbox.postponed(
            item.delivery_id, postpone(item, 30, "throttled", at(1), spend=False, max_attempts=3)
        )
        [later] = await outbox.due(at(31), 100)
        assert later.attempts == 0
        assert await outbox.failing("t1") == []

    async def test_a_notice_that_gave_up_is_never_due_and_stays_visible(self, outbox: Outbox) -> None:
        item = notice("a1")
        await outbox.put(item)
        await outbox.postponed(
            item.delivery_id, postpone(item, 1, "HTTP 500", at(1), spend=True, max_attempts=1)
        )
        assert await outbox.due(at(10_000), 100) == []
        [failed] = await outbox.failing("t1")
        assert failed.state == "failed" and failed.last_error == "HTTP 500"
