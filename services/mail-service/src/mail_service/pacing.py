"""Each message's submission gated by its mailbox's limits, the same across all replicas.

Before a message goes, its mailbox gives it a turn at its rate (`domain.limits.reserve`); a
turn a few seconds away is waited for here (a timer, no polling), one further away sends the
job back to the queue until then (`MustWait`), as does a used-up quota (counted here, across
replicas, before the provider has to refuse). Then it takes one of the mailbox's places in
submission and holds it until the server has answered. A submission that sent nothing gives
its quota count back; a quota reply closes the mailbox until its window frees, a provider's
throttle (a mail API's 429) closes its turns until the Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from fleetmail_runtime.bus import BusUnavailable
from fleetmail_runtime.smtp_replies import QUOTA_REMEDY

from .domain.limits import (
    MailboxLimits,
    MailboxState,
    Turn,
    Wait,
    WaitKind,
    block,
    hold_turns,
    release,
    reserve,
    take,
    uncount,
    window_frees_at,
)
from .errors import LimitsUnavailable, MailboxBusy, MustWait, QuotaExceeded

log = logging.getLogger(__name__)

T = TypeVar("T")
Paced = Callable[[datetime], Awaitable[None]]
"""Told when a message waits for its turn here: when it goes."""


class LimitsStore(Protocol):
    async def change(self, key: str, change: Callable[[MailboxState], T]) -> T: ...


@dataclass(frozen=True)
class PacingPolicy:
    horizon_s: float
    """A turn further away than this is waited for in the queue, not in the replica."""
    lease_s: float
    """How long a place in submission is held without renewal (a dead replica's places come
    back after it; a live submission renews it every third of it)."""
    place_poll_s: float
    """How often a submission that found every place taken by other replicas looks again."""


class MailboxGate:
    def __init__(
        self,
        store: LimitsStore,
        policy: PacingPolicy,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self._released: dict[str, asyncio.Event] = {}
        self._changing: dict[str, asyncio.Lock] = {}
        self._places: dict[str, asyncio.Semaphore] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    def _now(self) -> float:
        return self.clock().timestamp()

    async def _change(self, key: str, change: Callable[[MailboxState], T]) -> T:
        # One change at a time per mailbox in this replica: compare-and-set conflicts are then
        # only between replicas.
        async with self._changing.setdefault(key, asyncio.Lock()):
            try:
                return await self.store.change(key, change)
            except BusUnavailable as exc:
                # A retry of the job, not a failure of it and no unanswered message.
                raise LimitsUnavailable(f"the limits of mailbox {key} cannot be used now: {exc}") from exc

    @asynccontextmanager
    async def submission(
        self,
        key: str,
        limits: MailboxLimits,
        paced: Paced | None,
        recipients: int = 1,
        *,
        counted: bool = True,
    ) -> AsyncIterator[bool]:
        """Admitted to submit a message to `recipients` recipients (`counted=False`: a request
        that sends nothing, e.g. a lookup, takes a turn and a place but no quota); yields
        whether it had to wait for it."""
        policy = self.policy
        units = limits.units(recipients) if counted else 0
        reserved: Turn | Wait = await self._change(
            key, lambda s: reserve(s, self._now(), limits, policy.horizon_s, units)
        )
        if isinstance(reserved, Wait):
            quota = reserved.kind is WaitKind.WAITING_FOR_QUOTA
            raise MustWait(_at(reserved.until), reserved.kind, None, QUOTA_REMEDY if quota else None)
        turn = reserved
        delay = turn.at - self._now()
        waited = delay > 0
        if waited:
            if paced is not None:
                await paced(_at(turn.at))
            await self.sleep(delay)
        async with self._places.setdefault(key, asyncio.Semaphore(limits.concurrent)):
            holder = uuid.uuid4().hex
            give_up_at = self._now() + policy.horizon_s
            while not await self._change(key, lambda s: take(s, holder, self._now(), limits, policy.lease_s)):
                waited = True
                if self._now() >= give_up_at:
                    # Places held elsewhere for long (another replica's, or a dead one's until
                    # its lease ends): wait in the queue, not in this batch.
                    await self._give_back(key, turn, limits)
                    raise MustWait(_at(self._now() + policy.place_poll_s), WaitKind.PACED)
                await self._place_freed(key)
            renewing = asyncio.create_task(self._renew(key, holder, limits))
            try:
                yield waited
            except MailboxBusy as exc:
                # The server counts submissions its own way (a connection it has not yet seen
                # close): look again shortly, as for a place taken elsewhere.
                await self._give_back(key, turn, limits)
                raise MustWait(
                    _at(self._now() + policy.place_poll_s), WaitKind.PACED, exc.smtp_reply
                ) from None
            except QuotaExceeded as exc:
                # The provider counts more than fleetmail saw: nothing goes before the oldest
                # counted send leaves the window (a refusal then closes it again until the next).
                until = await self._change(key, lambda s: _close(s, turn, self._now(), limits))
                raise MustWait(_at(until), WaitKind.WAITING_FOR_QUOTA, exc.smtp_reply, exc.remedy) from None
            except MustWait as exc:
                # The provider's throttle (a mail API's 429): the mailbox's other jobs would be
                # throttled too, so none takes a turn before its Retry-After.
                until = exc.until.timestamp()
                await self._change(key, lambda s: _hold(s, turn, until, limits))
                raise
            except Exception:
                # Refused, unreachable, sent meanwhile by another replica: this turn sent
                # nothing, and a retry counts again. (A reply lost after the final dot is
                # counted short by one; the provider's own quota reply then closes the window.)
                await self._give_back(key, turn, limits)
                raise
            finally:
                renewing.cancel()
                # Given back in the background: the message's delivery is recorded without
                # waiting for this (a lease covers a replica that dies meanwhile).
                task = asyncio.create_task(self._release(key, holder))
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)

    async def _renew(self, key: str, holder: str, limits: MailboxLimits) -> None:
        """While a submission goes on, its place's lease is renewed (every third of the lease),
        so a long submission keeps its place and a dead replica's places come back within one
        lease."""
        policy = self.policy
        while True:
            await asyncio.sleep(policy.lease_s / 3)
            try:
                await self._change(key, lambda s: take(s, holder, self._now(), limits, policy.lease_s))
            except LimitsUnavailable as exc:
                log.warning("the place of a submission at mailbox %s could not be renewed: %s", key, exc)

    async def _give_back(self, key: str, turn: Turn, limits: MailboxLimits) -> None:
        if turn.counted:
            await self._change(key, lambda s: uncount(s, turn, limits))

    async def _release(self, key: str, holder: str) -> None:
        try:
            await self._change(key, lambda s: release(s, holder))
        except LimitsUnavailable as exc:
            log.warning("a place at mailbox %s will be freed by its lease: %s", key, exc)
        self._released.pop(key, asyncio.Event()).set()

    async def _place_freed(self, key: str) -> None:
        """Until this replica frees a place of the mailbox, or a while (another replica's)."""
        freed = self._released.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(freed.wait(), self.policy.place_poll_s)
        except TimeoutError:
            pass


def _close(state: MailboxState, turn: Turn, now: float, limits: MailboxLimits) -> float:
    """A quota reply: the refused message's count goes back, the mailbox closes until its
    window frees; returns when."""
    if turn.counted:
        uncount(state, turn, limits)
    until = window_frees_at(state, now, limits)
    block(state, until)
    return until


def _hold(state: MailboxState, turn: Turn, until: float, limits: MailboxLimits) -> None:
    """A throttled message sent nothing: its count goes back, and the turns wait."""
    if turn.counted:
        uncount(state, turn, limits)
    hold_turns(state, until)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def delay_until(until: datetime, now: datetime) -> float:
    return max(0.0, (until - now) / timedelta(seconds=1))
