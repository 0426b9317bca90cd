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
- `block` closes the mailbox until its quota window allows (after a quota reply).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum


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


def parts(recipients: list[str], per_message: int) -> list[list[str]]:
    """The recipients split into messages the provider takes; one part when they fit."""
    return [recipients[i : i + per_message] for i in range(0, len(recipients), per_message)] or [[]]


@dataclass
class MailboxState:
    holders: dict[str, float] = field(default_factory=dict)
    """Submissions in progress: holder → when its lease runs out."""
    next_turn: float = 0.0
    blocked_until: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(
            {"holders": self.holders, "next_turn": self.next_turn, "blocked_until": self.blocked_until}
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
        )


@dataclass(frozen=True)
class Turn:
    """The job's turn at the rate: it may start submitting at `at` (now or a little later)."""

    at: float


@dataclass(frozen=True)
class Wait:
    """Not now: the job goes back to the queue until `until`."""

    until: float
    kind: WaitKind


def reserve(state: MailboxState, now: float, limits: MailboxLimits, horizon_s: float) -> Turn | Wait:
    """The next turn of the mailbox, reserved in `state` — or why the job must wait."""
    if state.blocked_until > now:
        return Wait(state.blocked_until, WaitKind.WAITING_FOR_QUOTA)
    turn = max(now, state.next_turn)
    if turn - now > horizon_s:
        return Wait(turn, WaitKind.PACED)
    state.next_turn = turn + limits.interval_s
    return Turn(turn)


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


def block(state: MailboxState, until: float) -> None:
    """The provider said the quota is used up: nothing goes before `until`."""
    state.blocked_until = max(state.blocked_until, until)
