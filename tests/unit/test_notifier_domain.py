"""What the notifier's actions carry from their events (notifier.domain)."""

from datetime import UTC, datetime

from notifier.domain import FailureRate, Raise, Resolve, on_mail_event, on_token_event, scan_grants

PRINCIPAL = {"tenant_id": "t1", "kind": "administrator", "address": "admin@t1.example"}


def test_every_action_carries_the_time_of_its_event() -> None:
    failed = {
        "kind": "failed",
        "tenant_id": "t1",
        "reason_code": "reauthorization_required",
        "occurred_at": "2026-11-28T12:00:01.250000+00:00",
    }
    acquired = {"kind": "acquired", "principal": PRINCIPAL, "occurred_at": "2026-11-28T12:00:05Z"}
    [raised] = on_mail_event(failed)
    assert isinstance(raised, Raise)
    assert raised.observed_at == datetime(2026, 11, 28, 12, 0, 1, 250000, tzinfo=UTC)
    resolves = on_token_event(acquired)
    assert resolves and all(isinstance(a, Resolve) for a in resolves)
    assert {a.observed_at for a in resolves} == {datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)}
    rate = FailureRate(threshold=0.5, window=2, min_samples=1)
    [statistic] = rate.observe(failed | {"reason_code": "smtp_rejected"})
    assert statistic.observed_at == raised.observed_at


def test_an_event_without_a_readable_time_means_now() -> None:
    for occurred in ({}, {"occurred_at": "yesterday"}):
        [raised] = on_token_event({"kind": "reauthorization_required", "principal": PRINCIPAL, **occurred})
        assert raised.observed_at is None
    soon = datetime(2026, 11, 29, tzinfo=UTC)
    grant = {"status": "active", "predicted_death_at": soon.isoformat(), "principal": PRINCIPAL}
    [expiring] = scan_grants("t1", [grant], datetime(2026, 11, 28, tzinfo=UTC), soon - soon.replace(day=1))
    assert expiring.observed_at is None  # the scan's own finding: now
