"""What the two mail-API emulators (Microsoft Graph, the Gmail API) share: the throttle per app
and mailbox, the sent messages a client looks up after a crash, and their control endpoints.

They run in the SMTP emulator's process, so a message sent through an API is kept and listed
exactly as one sent over SMTP (`/_emulator/messages`), and counts against the same mailbox's
daily quota on the same clock.

Throttle (per app and mailbox, the mailbox's `Limits`): at most `api_concurrent` requests in
flight, at most `api_quota` cost per `api_quota_window_s`. A test may hold a mailbox's
requests in flight (`/_emulator/api/hold`) to see the next one refused, read what is in
flight and spent (`/_emulator/api/usage`), and read every 429 the throttle answered for a
mailbox (`/_emulator/api/throttled`): a test of a client's pacing proves it met them.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

if TYPE_CHECKING:
    from .smtp import EmulatorState, Fault


@dataclass
class Throttle:
    """One app's use of one mailbox."""

    in_flight: int = 0
    spent: deque[tuple[float, int]] = field(default_factory=deque)
    uploaded: deque[tuple[float, int]] = field(default_factory=deque)

    def spent_in(self, now: float, window_s: float, spent: deque[tuple[float, int]] | None = None) -> int:
        spent = self.spent if spent is None else spent
        while spent and spent[0][0] <= now - window_s:
            spent.popleft()
        return sum(cost for _, cost in spent)

    def retry_after_s(
        self, now: float, window_s: float, spent: deque[tuple[float, int]] | None = None
    ) -> int:
        """Seconds until the oldest cost in the window leaves it."""
        spent = self.spent if spent is None else spent
        return max(1, math.ceil(spent[0][0] + window_s - now)) if spent else 1


@dataclass(frozen=True)
class SentMessage:
    """A message in the mailbox's Sent Items (Graph) or with the SENT label (Gmail)."""

    id: str
    mailbox: str
    internet_message_id: str
    subject: str
    sent_at: float
    delivery_id: str
    """The id of the delivery `/_emulator/messages` lists."""


@dataclass(frozen=True)
class Throttled:
    """A request the throttle refused with 429."""

    app: str
    mailbox: str
    limit: str
    """"concurrency", "quota" or "upload"."""
    retry_after_s: int
    at: float


def garbled(fault: Fault) -> Response:
    """A success the client cannot read (fault stage `answer`): the request was carried out,
    its answer is the fault's status with its text instead of the API's JSON."""
    return Response(fault.text, status_code=fault.code, media_type="text/html")


@dataclass
class ApiState:
    throttles: dict[tuple[str, str], Throttle] = field(default_factory=dict)
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    """Mailboxes whose requests wait, in flight, until the test lets them go."""
    app_access_policies: dict[str, set[str]] = field(default_factory=dict)
    """Graph, app-only: an app an application access policy (or an RBAC for Applications
    scope) limits to these mailboxes; an app without one reaches every mailbox."""
    sent: list[SentMessage] = field(default_factory=list)
    throttled: list[Throttled] = field(default_factory=list)
    """Every 429 the throttle answered, oldest first."""
    drafts: dict[str, Any] = field(default_factory=dict)
    """Graph's drafts by id (`graph_messages.Draft`): a draft a client left behind stays here,
    as it would stay in the mailbox's Drafts folder."""

    def throttle(self, app: str, mailbox: str) -> Throttle:
        return self.throttles.setdefault((app.lower(), mailbox.lower()), Throttle())

    async def wait_if_held(self, mailbox: str) -> None:
        event = self.held.get(mailbox.lower())
        if event is not None:
            await event.wait()

    def sent_by(self, mailbox: str) -> list[SentMessage]:
        return [m for m in self.sent if m.mailbox == mailbox.lower()]


def over_budget(state: EmulatorState, app: str, mailbox: str, cost: int) -> tuple[str, int] | None:
    """Which limit a request would go over ("concurrency" or "quota") and the Retry-After
    seconds; None: it may go, and now counts as in flight (the caller calls `done`)."""
    limits, now = state.limits_of(mailbox), state.clock.now()
    throttle = state.api.throttle(app, mailbox)
    refused: tuple[str, int] | None = None
    if limits.api_concurrent is not None and throttle.in_flight >= limits.api_concurrent:
        refused = "concurrency", 1
    elif limits.api_quota is not None:
        if throttle.spent_in(now, limits.api_quota_window_s) + cost > limits.api_quota:
            refused = "quota", throttle.retry_after_s(now, limits.api_quota_window_s)
    if refused is not None:
        state.api.throttled.append(Throttled(app.lower(), mailbox.lower(), *refused, now))
        return refused
    throttle.in_flight += 1
    throttle.spent.append((now, cost))
    return None


def over_upload(state: EmulatorState, app: str, mailbox: str, size: int) -> int | None:
    """Retry-After seconds when `size` more bytes would go over the upload budget; None: they
    may go, and now count."""
    limits, now = state.limits_of(mailbox), state.clock.now()
    throttle = state.api.throttle(app, mailbox)
    if limits.api_upload_bytes is not None:
        window = limits.api_upload_window_s
        if throttle.spent_in(now, window, throttle.uploaded) + size > limits.api_upload_bytes:
            retry_after_s = throttle.retry_after_s(now, window, throttle.uploaded)
            state.api.throttled.append(Throttled(app.lower(), mailbox.lower(), "upload", retry_after_s, now))
            return retry_after_s
    throttle.uploaded.append((now, size))
    return None


def done(state: EmulatorState, app: str, mailbox: str) -> None:
    state.api.throttle(app, mailbox).in_flight -= 1


class HoldRequest(BaseModel):
    mailbox: str
    hold: bool


class AppAccessPolicy(BaseModel):
    """`New-ApplicationAccessPolicy -AccessRight RestrictAccess` (or an RBAC for Applications
    management scope): the app reaches only these mailboxes; None removes the policy."""

    app_id: str
    mailboxes: list[str] | None


def control_router(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/_emulator/api")

    @router.post("/hold")
    async def hold(body: HoldRequest) -> dict[str, bool]:
        key = body.mailbox.lower()
        if body.hold:
            state.api.held.setdefault(key, asyncio.Event())
        elif (event := state.api.held.pop(key, None)) is not None:
            event.set()
        return {"held": body.hold}

    @router.get("/usage")
    async def usage(mailbox: str, app: str) -> dict[str, int]:
        throttle = state.api.throttle(app, mailbox)
        window = state.limits_of(mailbox).api_quota_window_s
        return {"in_flight": throttle.in_flight, "spent": throttle.spent_in(state.clock.now(), window)}

    @router.post("/app-access-policy")
    async def app_access_policy(body: AppAccessPolicy) -> dict[str, Any]:
        if body.mailboxes is None:
            state.api.app_access_policies.pop(body.app_id, None)
        else:
            state.api.app_access_policies[body.app_id] = {m.lower() for m in body.mailboxes}
        return {"app_id": body.app_id, "mailboxes": body.mailboxes}

    @router.get("/throttled")
    async def throttled(mailbox: str) -> list[dict[str, Any]]:
        """The 429s the throttle answered for this mailbox (any app), oldest first."""
        return [t.__dict__ for t in state.api.throttled if t.mailbox == mailbox.lower()]

    @router.get("/sent")
    async def sent(mailbox: str) -> list[dict[str, Any]]:
        return [m.__dict__ for m in state.api.sent_by(mailbox)]

    @router.get("/drafts")
    async def drafts(mailbox: str) -> list[dict[str, Any]]:
        """The Graph drafts a mailbox holds (ids and subjects)."""
        return [
            {"id": d.id, "subject": str(d.message.get("Subject", "")), "attachments": len(d.attachments)}
            for d in state.api.drafts.values()
            if d.mailbox == mailbox.lower()
        ]

    return router
