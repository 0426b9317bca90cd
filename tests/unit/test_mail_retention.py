"""The attachment lifecycle's decisions (mail-service `domain.retention`), and the handler
carrying them out on fakes: a sent job's documents go, a dead job's stay."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from fleetmail_contracts.jobs import AttachmentRef
from mail_service.domain.retention import (
    Holds,
    StoredObject,
    names_in_json,
    object_names,
    over_threshold,
    plan_sweep,
    retained,
)

from tests.unit.test_mail_handler import Edge, scan

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
GRACE = timedelta(hours=1)
RETENTION = timedelta(days=7)


def old(name: str, age: timedelta = timedelta(hours=2)) -> StoredObject:
    return StoredObject(name, NOW - age)


def plan(objects: list[StoredObject], holds: Holds = Holds(), suspects: frozenset[str] = frozenset()):
    return plan_sweep(objects, holds, suspects, now=NOW, grace=GRACE, retention=RETENTION)


def test_an_unheld_object_past_the_grace_is_a_suspect_first_and_removed_at_the_next_sweep() -> None:
    first = plan([old("a/1/0")])
    assert first.remove == () and first.suspects == {"a/1/0"}
    second = plan([old("a/1/0")], suspects=first.suspects)
    assert second.remove == ("a/1/0",) and second.suspects == frozenset()


def test_a_fresh_object_is_never_swept_whatever_holds_it() -> None:
    fresh = old("upload/1/0", age=timedelta(minutes=59))
    assert plan([fresh], suspects=frozenset({"upload/1/0"})) == plan([])


def test_an_object_of_a_live_job_is_kept_and_stops_being_a_suspect() -> None:
    decided = plan([old("q/1/0")], Holds(live=frozenset({"q/1/0"})), suspects=frozenset({"q/1/0"}))
    assert decided.remove == () and decided.suspects == frozenset()


def test_a_dead_letter_holds_its_documents_for_the_retention_only() -> None:
    young = Holds(dead_since={"d/1/0": NOW - RETENTION + timedelta(seconds=1)})
    assert plan([old("d/1/0")], young, suspects=frozenset({"d/1/0"})).remove == ()
    expired = Holds(dead_since={"d/1/0": NOW - RETENTION})
    assert plan([old("d/1/0")], expired, suspects=frozenset({"d/1/0"})).remove == ("d/1/0",)
    assert retained(NOW - timedelta(days=6), NOW, RETENTION)
    assert not retained(NOW - timedelta(days=7), NOW, RETENTION)


def test_a_resent_dead_job_holds_its_documents_past_the_retention_while_it_is_queued() -> None:
    holds = Holds(live=frozenset({"d/1/0"}), dead_since={"d/1/0": NOW - timedelta(days=30)})
    assert plan([old("d/1/0")], holds, suspects=frozenset({"d/1/0"})).remove == ()


def test_the_objects_a_job_names_are_read_leniently() -> None:
    assert object_names({"attachments": [{"object_name": "a/1/0"}, {"filename": "x"}, "junk"]}) == ["a/1/0"]
    assert object_names({"attachments": "nope"}) == [] and object_names({}) == []
    assert names_in_json(b'{"attachments": [{"object_name": "b/2/1"}]}') == ["b/2/1"]
    assert names_in_json(b"not json") == [] and names_in_json(b"[1]") == []


def test_the_alert_threshold_is_a_share_of_the_limit_and_a_store_without_one_never_alarms() -> None:
    assert over_threshold(80, 100, 80) and not over_threshold(79, 100, 80)
    assert not over_threshold(10**12, -1, 80)


PDF = b"%PDF-1.4 scan"


def ref(name: str) -> AttachmentRef:
    return AttachmentRef(
        object_name=name,
        filename="scan.pdf",
        content_type="application/pdf",
        size=len(PDF),
        sha256=hashlib.sha256(PDF).hexdigest(),
    )


async def test_a_sent_jobs_documents_are_discarded_before_it_is_announced_sent() -> None:
    edge = Edge()
    edge.deliverer.attachments.documents["j/1/0"] = PDF  # type: ignore[attr-defined]
    discarded_when_announced: list[list[str]] = []
    publish = edge.events.publish

    async def announcing(event):  # type: ignore[no-untyped-def]
        if event.kind == "sent":
            discarded_when_announced.append(list(edge.deliverer.attachments.discarded))  # type: ignore[attr-defined]
        await publish(event)

    edge.events.publish = announcing  # type: ignore[method-assign]
    job = scan(attachments=(ref("j/1/0"),))
    message = await edge.handle(job)
    assert message.answers == ["ack"]
    assert discarded_when_announced == [["j/1/0"]]


async def test_a_dead_jobs_documents_stay_for_a_resend() -> None:
    edge = Edge()
    # No document stored: the job fails for good (attachment missing) and is dead-lettered.
    message = await edge.handle(scan(attachments=(ref("j/2/0"),)))
    assert message.answers == ["ack"] and len(edge.events.dead_letters) == 1
    assert edge.deliverer.attachments.discarded == []  # type: ignore[attr-defined]


async def test_a_redelivery_already_sent_discards_what_a_crash_left() -> None:
    edge = Edge()
    edge.ledger.records["job-1"] = "<job-1@fleetmail>"
    await edge.handle(scan(attachments=(ref("j/3/0"),)), attempt=2)
    assert edge.deliverer.attachments.discarded == ["j/3/0"]  # type: ignore[attr-defined]


async def test_a_store_that_cannot_delete_now_leaves_the_documents_to_the_sweep_and_the_job_is_sent() -> None:
    edge = Edge()
    edge.deliverer.attachments.documents["j/4/0"] = PDF  # type: ignore[attr-defined]
    job = scan(attachments=(ref("j/4/0"),))
    fetch = edge.deliverer.attachments.fetch

    async def fetch_then_fail(attachment, into):  # type: ignore[no-untyped-def]
        await fetch(attachment, into)
        edge.deliverer.attachments.down = True  # type: ignore[attr-defined]

    edge.deliverer.attachments.fetch = fetch_then_fail  # type: ignore[method-assign]
    message = await edge.handle(job)
    assert message.answers == ["ack"] and edge.events.kinds("job-1") == ["accepted", "sent"]
