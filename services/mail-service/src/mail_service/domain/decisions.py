"""What to do with a job after a delivery attempt: the one place that decides.

`decide` turns an attempt's outcome into a value; the handler edge only carries it out.

| outcome                                   | decision                                        |
|-------------------------------------------|-------------------------------------------------|
| delivered                                 | `Ack(delivered)`: ledger, `sent` event, ack     |
| a redelivery the ledger already holds     | `AckRedelivery()`: ack, announce nothing        |
| `AwaitingAuthorization(user)`             | `Park(user)`: `parked` event, ack (the job     |
|                                           | waits for that user's sign-in, or for the       |
|                                           | administrator's first [Acquire])                |
| `MustWait` (the mailbox's turn or quota)   | `WaitForMailbox(until)`: `paced` or             |
|                                           | `waiting_for_quota` event, back to the queue    |
| transient, attempt < max_deliver          | `Retry(delay)`: `deferred` event, put back      |
| transient, attempt ≥ max_deliver          | `DeadLetter(retries_exhausted)`                 |
| permanent (or any other `DeliveryError`)  | `DeadLetter(its reason, remedy, SMTP reply)`    |

A `DeadLetter` is carried out as a dead letter, a `failed` event (when the job could be
read) and an ack. The delay of a retry is what the error asks for (`retry_after_s`: a
Retry-After the provider sent, already bounded by the adapter) or, when it asks for nothing,
exponential backoff with jitter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fleetmail_contracts.mail_events import FailureReason

from ..errors import AwaitingAuthorization, DeliveryError, MustWait, SentMeanwhile, TransientDeliveryError
from .limits import WaitKind


@dataclass(frozen=True)
class RetryPolicy:
    max_deliver: int
    """Deliveries of one job before it is dead-lettered."""
    base_s: float
    """The first retry's delay; it doubles with each attempt."""
    max_s: float
    """No retry waits longer (before jitter)."""


def retry_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Exponential backoff; `jitter` in [0, 1) spreads retries of many jobs apart."""
    delay: float = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return delay * (0.5 + jitter / 2)


@dataclass(frozen=True)
class Delivered:
    """The SMTP server accepted the message."""

    sender: str
    message_id: str
    smtp_reply: str
    accepted: tuple[str, ...]
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlreadyDelivered:
    """A redelivered job that the delivery ledger says was sent before."""


Outcome = Delivered | AlreadyDelivered | DeliveryError


@dataclass(frozen=True)
class Ack:
    delivered: Delivered


@dataclass(frozen=True)
class AckRedelivery:
    pass


@dataclass(frozen=True)
class Retry:
    delay_s: float
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    reason: FailureReason
    detail: str
    remedy: str | None = None
    smtp_reply: str | None = None


@dataclass(frozen=True)
class Park:
    user: str
    administrator: bool = False


@dataclass(frozen=True)
class WaitForMailbox:
    """Not a failure: the job goes back to the queue until its mailbox allows it."""

    until: datetime
    kind: WaitKind
    smtp_reply: str | None = None
    remedy: str | None = None


Decision = Ack | AckRedelivery | Retry | DeadLetter | Park | WaitForMailbox


def decide(outcome: Outcome, *, attempt: int, policy: RetryPolicy, jitter: Callable[[], float]) -> Decision:
    """What to do after delivery attempt number `attempt` ended in `outcome`; `jitter` gives a
    number in [0, 1) and is called only when a backoff delay is computed."""
    if isinstance(outcome, Delivered):
        return Ack(outcome)
    if isinstance(outcome, AlreadyDelivered | SentMeanwhile):
        return AckRedelivery()
    if isinstance(outcome, AwaitingAuthorization):
        return Park(outcome.user, outcome.administrator)
    if isinstance(outcome, MustWait):
        return WaitForMailbox(outcome.until, outcome.kind, outcome.smtp_reply, outcome.remedy)
    if isinstance(outcome, TransientDeliveryError):
        if attempt >= policy.max_deliver:
            return DeadLetter(
                FailureReason.RETRIES_EXHAUSTED,
                f"gave up after {attempt} attempts: {outcome}",
                smtp_reply=outcome.smtp_reply,
            )
        delay = outcome.retry_after_s
        if delay is None or delay <= 0:
            delay = retry_delay(attempt, policy.base_s, policy.max_s, jitter())
        return Retry(delay, str(outcome))
    return give_up(outcome)


def give_up(error: DeliveryError) -> DeadLetter:
    """A permanent failure: its reason, what to do about it, and the SMTP server's reply."""
    return DeadLetter(error.reason, str(error), error.remedy, error.smtp_reply)


SIGN_IN_REMEDY = "Sign in at the device's OAuth screen, then send the job again."
ACQUIRE_REMEDY = (
    "Acquire the administrator's refresh token ([OAuth 2.0] → Refresh Tokens → [Acquire], or "
    "`fleetmail tokens acquire <tenant>`), then resend the dead letter."
)


def parking_expired(user: str, timeout_s: float, *, administrator: bool = False) -> DeadLetter:
    """A parked job whose user (or administrator) did not sign in before its deadline."""
    if administrator:
        return DeadLetter(
            FailureReason.AUTHORIZATION_TIMEOUT,
            f"OAuth 2.0 is on and the administrator ({user}) did not sign in within "
            f"{_duration(timeout_s)}; the job was not sent",
            ACQUIRE_REMEDY,
        )
    return DeadLetter(
        FailureReason.AUTHORIZATION_TIMEOUT,
        f"{user} did not sign in within {timeout_s / 60:g} minutes; the job was not sent",
        SIGN_IN_REMEDY,
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    if seconds >= 60:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds"
