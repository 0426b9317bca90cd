"""A sending mailbox's limits across all replicas: its turn at the rate, its submissions in
progress, its quota window. Pure: the state is a value, `now` is given (epoch seconds).

The adapter keeps one state per mailbox in a KV bucket and changes it by compare-and-set, so
every replica sees the same turns:

- `reserve` hands out the mailbox's next turn at its rate (turns `interval_s` apart, never
  two at once: Exchange counts messages a minute over a sliding window). A turn further away
  than `horizon_s`, or a mailbox whose quota is used up, is not reserved: the job waits
  outside the replica (`Wait`).
- `take` admits one more submission when fewer than `concurrent` are in progress; each holds
  a lease, so a replica that died frees its places when they expire.
- The daily quota is counted here too, before the provider refuses: each turn counts its
  message (Gmail) or its recipients (Exchange) in the hour of the rolling window it falls in
  (24 buckets a window, so the state stays small however much is sent). A turn that would go
  past the quota is not reserved: the job waits until the oldest counted sends leave the
  window. A turn that sent nothing gives its count back (`uncount`).
- `block` closes the mailbox until its quota window allows (after a quota reply: the provider
  counts more than fleetmail saw, e.g. mail sent by people from the same mailbox).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum

DAY_S = 86_400.0
BUCKETS = 24
"""Buckets a quota window is counted in (an hour each for a day): a send counts until its whole
bucket has left the window, so fleetmail waits at most one bucket longer than the provider."""


def mailbox_key(tenant_id: str, address: str) -> str:
    """The mailbox's key in the limits bucket (KV keys allow no '@': a digest of the address)."""
    return f"{tenant_id}.{hashlib.sha256(address.casefold().encode()).hexdigest()[:24]}"


class WaitKind(StrEnum):
    PACED = "paced"
    WAITING_FOR_QUOTA = "waiting_for_quota"


@dataclass(frozen=True)
class MailboxLimits:
    concurrent: int
    """Messages of the mailbox in submission at once (Exchange Online: 3)."""
    interval_s: float
    """Time between two submissions' turns (Exchange Online: 30 a minute, 2 s); 0: unpaced."""
    recipients_per_message: int = 500
    """More recipients than this go in several messages (Exchange Online 500, Gmail about 100)."""
    daily_quota: int | None = None
    """What the mailbox may send over `quota_window_s` (Exchange Online: 10,000 recipients;
    Gmail: 2,000 messages on Workspace); None: not counted."""
    quota_counts_recipients: bool = True
    """The quota counts recipients (Exchange Online), else messages (Gmail)."""
    quota_window_s: float = DAY_S
    """The rolling window the quota is counted over (both providers: 24 hours)."""

    def units(self, recipients: int) -> int:
        """What one message to `recipients` recipients counts against the quota."""
        return max(1, recipients) if self.quota_counts_recipients else 1


def parts(recipients: list[str], per_message: int) -> list[list[str]]:
    """The recipients split into messages the provider takes; one part when they fit."""
    return [recipients[i : i + per_message] for i in range(0, len(recipients), per_message)] or [[]]


@dataclass
class MailboxState:
    holders: dict[str, float] = field(default_factory=dict)
    """Submissions in progress: holder → when its lease runs out."""
    next_turn: float = 0.0
    blocked_until: float = 0.0
    sent: dict[int, int] = field(default_factory=dict)
    """What counted against the quota, per bucket of the window (bucket number → units)."""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "holders": self.holders,
                "next_turn": self.next_turn,
                "blocked_until": self.blocked_until,
                "sent": {str(k): v for k, v in self.sent.items()},
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> MailboxState:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            {str(k): float(v) for k, v in data.get("holders", {}).items()},
            float(data.get("next_turn", 0.0)),
            float(data.get("blocked_until", 0.0)),
            {int(k): int(v) for k, v in data.get("sent", {}).items()},
        )


@dataclass(frozen=True)
class Turn:
    """The job's turn at the rate: it may start submitting at `at` (now or a little later);
    `counted` units were counted against the quota for it."""

    at: float
    counted: int = 0


@dataclass(frozen=True)
class Wait:
    """Not now: the job goes back to the queue until `until`."""

    until: float
    kind: WaitKind


def reserve(
    state: MailboxState, now: float, limits: MailboxLimits, horizon_s: float, units: int = 1
) -> Turn | Wait:
    """The next turn of the mailbox for a message counting `units` against its quota, reserved
    in `state` — or why the job must wait."""
    if state.blocked_until > now:
        return Wait(state.blocked_until, WaitKind.WAITING_FOR_QUOTA)
    turn = max(now, state.next_turn)
    counted = 0
    if limits.daily_quota is not None:
        counted = min(units, limits.daily_quota)  # a message bigger than the quota goes alone
        allowed = quota_allows_at(state, turn, limits, counted)
        if allowed > turn:
            return Wait(allowed, WaitKind.WAITING_FOR_QUOTA)
    if turn - now > horizon_s:
        return Wait(turn, WaitKind.PACED)
    state.next_turn = turn + limits.interval_s
    if counted:
        _prune(state, turn, limits)
        bucket = _bucket(turn, limits)
        state.sent[bucket] = state.sent.get(bucket, 0) + counted
    return Turn(turn, counted)


def counted_in_window(state: MailboxState, now: float, limits: MailboxLimits) -> int:
    return sum(n for b, n in state.sent.items() if _leaves_at(b, limits) > now)


def quota_allows_at(state: MailboxState, now: float, limits: MailboxLimits, units: int) -> float:
    """When `units` more fit in the mailbox's quota: now, or when enough of the oldest counted
    sends have left the rolling window."""
    assert limits.daily_quota is not None
    used = counted_in_window(state, now, limits)
    at = now
    for bucket in sorted(b for b in state.sent if _leaves_at(b, limits) > now):
        if used + units <= limits.daily_quota:
            break
        used -= state.sent[bucket]
        at = _leaves_at(bucket, limits)
    return at


def window_frees_at(state: MailboxState, now: float, limits: MailboxLimits) -> float:
    """The provider said the quota is used up: the first time anything leaves its window (the
    oldest counted send's bucket), or one bucket from now when fleetmail counted nothing."""
    live = [_leaves_at(b, limits) for b in state.sent if _leaves_at(b, limits) > now]
    return min(live, default=now + limits.quota_window_s / BUCKETS)


def uncount(state: MailboxState, turn: Turn, limits: MailboxLimits) -> None:
    """The turn sent nothing (no place, refused before the message went): its count goes back."""
    bucket = _bucket(turn.at, limits)
    left = state.sent.get(bucket, 0) - turn.counted
    if left > 0:
        state.sent[bucket] = left
    else:
        state.sent.pop(bucket, None)


def _bucket(at: float, limits: MailboxLimits) -> int:
    return int(at // (limits.quota_window_s / BUCKETS))


def _leaves_at(bucket: int, limits: MailboxLimits) -> float:
    """When the last send counted in `bucket` leaves the rolling window."""
    size = limits.quota_window_s / BUCKETS
    return (bucket + 1) * size + limits.quota_window_s


def _prune(state: MailboxState, now: float, limits: MailboxLimits) -> None:
    state.sent = {b: n for b, n in state.sent.items() if _leaves_at(b, limits) > now}


def take(state: MailboxState, holder: str, now: float, limits: MailboxLimits, lease_s: float) -> bool:
    """Admit `holder` as a submission in progress, if the mailbox has room. A refusal leaves
    `state` as it was, so a submission looking again and again writes nothing."""
    live = {h: until for h, until in state.holders.items() if until > now}
    if holder not in live and len(live) >= limits.concurrent:
        return False
    live[holder] = now + lease_s
    state.holders = live
    return True


def release(state: MailboxState, holder: str) -> None:
    state.holders.pop(holder, None)


def hold_turns(state: MailboxState, until: float) -> None:
    """The provider throttles the mailbox (a 429's Retry-After): no turn before `until`, for
    any of its jobs."""
    state.next_turn = max(state.next_turn, until)


def block(state: MailboxState, until: float) -> None:
    """The provider said the quota is used up: nothing goes before `until`."""
    state.blocked_until = max(state.blocked_until, until)
