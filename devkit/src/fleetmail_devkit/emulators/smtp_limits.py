"""The providers' sending limits, as the SMTP emulator enforces them per mailbox.

Exchange Online (SMTP AUTH submission): 3 messages of one mailbox in submission at once
across connections (a fourth gets `432 4.3.2`), 30 a minute (the excess is answered late,
carried over to the next minutes), 10,000 recipients a day (`554 5.2.0
…SubmissionQuotaExceededException`), 500 recipients a message, 35 MB a message by default
(settable per mailbox), a full mailbox refuses (`554 5.2.2`, sent mail is kept in Sent
Items). Gmail: a daily number of messages per user over a rolling 24 hours (`550 5.4.5`),
about 100 recipients a message, 35,882,577 bytes. Lines of at most 1,000 characters.

Windows are measured on the emulator's own clock, which a test moves forward
(`EmulatorClock.advance`) so a day passes without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

from fleetmail_runtime import smtp_replies

DAY_S = 86_400.0
MINUTE_S = 60.0
MAX_LINE = 1000
"""Octets in a line, CRLF included (RFC 5322 2.1.1)."""


@dataclass(frozen=True)
class Limits:
    concurrent: int | None
    """Messages of one mailbox in submission (MAIL to the end of DATA) at once; None: no limit."""
    per_minute: int | None
    daily: int
    daily_counts: Literal["recipients", "messages"]
    max_message_bytes: int
    max_recipients: int
    rate_window_s: float = MINUTE_S
    """The window `per_minute` counts over: a test shortens it to see a rate in seconds."""
    api_concurrent: int | None = None
    """Mail API requests of one app for this mailbox in flight at once (Graph: 4)."""
    api_quota: int | None = None
    """Mail API cost one app may spend on this mailbox per `api_quota_window_s`: Graph counts
    requests (10,000 per 10 minutes), Gmail quota units (15,000 a minute; a send is 100)."""
    api_quota_window_s: float = 600.0
    api_upload_bytes: int | None = None
    """Bytes one app may upload to this mailbox per `api_upload_window_s` (Graph: 150 MB in
    5 minutes), request bodies and upload-session byte ranges alike."""
    api_upload_window_s: float = 300.0


DEFAULT_LIMITS = {
    "microsoft": Limits(
        3,
        30,
        10_000,
        "recipients",
        36_700_160,
        500,
        api_concurrent=4,
        api_quota=10_000,
        api_quota_window_s=600,
        api_upload_bytes=150 * 1024 * 1024,
        api_upload_window_s=300,
    ),
    "gmail": Limits(
        None, None, 2_000, "messages", 35_882_577, 100, api_quota=15_000, api_quota_window_s=MINUTE_S
    ),
}


class EmulatorClock:
    """Wall-clock time plus an offset a test can move forward."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


@dataclass
class Usage:
    """What one mailbox has in flight and has sent, on the emulator's clock."""

    in_submission: int = 0
    starts: deque[float] = field(default_factory=deque)
    sent: deque[tuple[float, int]] = field(default_factory=deque)

    def sent_today(self, now: float) -> int:
        while self.sent and self.sent[0][0] <= now - DAY_S:
            self.sent.popleft()
        return sum(n for _, n in self.sent)

    def start(self, now: float, per_minute: int | None, window_s: float = MINUTE_S) -> float:
        """Record a submission; returns how long (s) its answer is held back: Exchange delays,
        rather than refuses, what goes over the rate."""
        while self.starts and self.starts[0] <= now - window_s:
            self.starts.popleft()
        at = now
        if per_minute is not None and len(self.starts) >= per_minute:
            # The excess is carried over: it counts from when its window has room.
            at = max(now, self.starts[-per_minute] + window_s)
        self.starts.append(at)
        return at - now


def limits_with(base: Limits, overrides: dict[str, float | None]) -> Limits:
    return replace(base, **overrides)  # type: ignore[arg-type]


def over_daily(limits: Limits, usage: Usage, now: float, recipients: int) -> str | None:
    """The provider's quota reply when this message would go past the daily limit."""
    this = recipients if limits.daily_counts == "recipients" else 1
    if usage.sent_today(now) + this <= limits.daily:
        return None
    if limits.daily_counts == "recipients":
        return reply(smtp_replies.SUBMISSION_QUOTA_EXCEEDED)
    return reply(smtp_replies.GMAIL_DAILY_LIMIT)


def long_line(raw: bytes) -> bool:
    return any(len(line) + 2 > MAX_LINE for line in raw.split(b"\r\n"))


def reply(known: smtp_replies.KnownReply) -> str:
    lines = known.text.split("\n")
    if len(lines) == 1:
        return f"{known.code} {lines[0]}"
    return "\r\n".join(
        f"{known.code}{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)
    )
