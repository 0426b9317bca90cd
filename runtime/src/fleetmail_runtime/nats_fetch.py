"""One kind of timeout from a JetStream pull `fetch`, so that no fetched message is dropped.

nats-py's `PullSubscription.fetch` says "no messages in time" with its own
`nats.errors.TimeoutError` — except on one path: when the deadline runs out between its
no-wait request and its waiting request, it raises the builtin `asyncio.TimeoutError`
(nats-py 2.16.0, `_fetch_n`). FastStream's pull subscribers (0.7.8) catch only the nats
one. The other escapes and ends the consume task, which FastStream's supervisor restarts —
and a batch subscriber, which keeps fetching until its batch is full or its time is up,
loses the messages it had already fetched for that batch. They are neither handled nor
acknowledged, so JetStream hands them out again only after `ack_wait` (30 s here): under
load, events reached the notifier and job-gateway's status projection half a minute late
(an alert resolved by a re-acquired grant, then raised again by the stale failures).

Both libraries are at their newest release; this wraps `fetch` once per process so every
timeout it raises is the documented `nats.errors.TimeoutError`. Written here because no
setting avoids the path (it is reached whenever a batch is partial and time runs out).
`make_broker` applies it; tests/integration/test_nats_fetch.py loses messages without it.
Remove it when nats-py raises one type on every path.
"""

from __future__ import annotations

import functools
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext

_MARK = "_fleetmail_one_timeout"


def consistent_fetch_timeouts() -> None:
    """Wraps `PullSubscription.fetch` (idempotent)."""
    subscription = JetStreamContext.PullSubscription
    original = subscription.fetch
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except NatsTimeoutError:
            raise
        except TimeoutError as exc:  # the builtin one (asyncio.TimeoutError)
            raise NatsTimeoutError from exc

    setattr(fetch, _MARK, True)
    subscription.fetch = fetch  # type: ignore[method-assign]
