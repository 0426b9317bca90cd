"""What the Graph and Gmail API transports share: the HTTP client, the message as the APIs
take it (the SMTP path's MIME with its Bcc header: an API reads the recipients from the
headers, where SMTP has an envelope), and the classification of answers every API gives
alike (401, 429, 5xx, no answer).

A `Retry-After` (seconds or an HTTP date) sets a delay only when it is present and readable,
and then within [RETRY_AFTER_MIN_S, the deployment's maximum]: a provider's zero would retry
in a hot loop, a year would park the job for a year. Without one, the job takes the retry
policy's exponential backoff, so an outage does not use up its attempts in seconds."""

from __future__ import annotations

import email.utils
import math
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from ..domain.limits import WaitKind
from ..domain.mime import MimeMessage
from ..errors import ApiTransient, DeliveryError, MustWait, TokenRejected
from .smtp import tls_context

RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 3600.0
"""The default ceiling on a provider's Retry-After (`FLEETMAIL_MAIL_API_RETRY_AFTER_MAX_S`)."""


def with_bcc(message: MimeMessage, recipients: list[str]) -> MimeMessage:
    """The message with a Bcc header for the recipients To and Cc do not show (the API removes
    it before delivery, as the SMTP envelope never shows it)."""
    shown = {
        address.casefold()
        for name, value in message.headers
        if name.lower() in ("to", "cc")
        for _, address in email.utils.getaddresses([value])
    }
    hidden = [r for r in recipients if r.casefold() not in shown]
    if not hidden:
        return message
    return replace(message, headers=(*message.headers, ("Bcc", ", ".join(hidden))))


async def pieces(blocks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The bytes of `blocks` in pieces of exactly `size` (the last one shorter), for upload
    ranges and resumable chunks. Gathered in one buffer: appending to bytes would copy the
    whole piece so far at every block, megabytes per block for an upload range."""
    pending = bytearray()
    async for block in blocks:
        pending += block
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def json_object_of(response: httpx.Response) -> dict[str, object] | None:
    """A success answer's JSON object; None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def field_of(response: httpx.Response, name: str, api: str) -> str:
    """A text field of a success answer to a request made before the provider accepted the
    message: an answer without it is a failure to retry, never an exception outside the tree."""
    value = (json_object_of(response) or {}).get(name)
    if not isinstance(value, str) or not value:
        reply = f"{response.status_code} without a readable {name}"
        raise ApiTransient(f"{api} answered {reply}", reply)
    return value


def retry_after_of(response: httpx.Response, now: datetime, max_s: float = RETRY_AFTER_MAX_S) -> float | None:
    """The answer's Retry-After in seconds, within [RETRY_AFTER_MIN_S, max_s]; None when there
    is none or it cannot be read (then the retry policy decides)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max_s, max(RETRY_AFTER_MIN_S, seconds))


def common_error(
    response: httpx.Response, reply: str, now: datetime, max_retry_after_s: float = RETRY_AFTER_MAX_S
) -> DeliveryError | None:
    """What 401, 429 and 5xx mean whichever API said them; None for the others."""
    if response.status_code == 401:
        return TokenRejected(reply, "the mail API")
    if response.status_code == 429:
        return throttled(response, reply, now, max_retry_after_s)
    if response.status_code >= 500 or response.status_code == 408:
        retry_after_s = retry_after_of(response, now, max_retry_after_s)
        return ApiTransient(f"the mail API failed for now: {reply}", reply, retry_after_s)
    return None


def throttled(
    response: httpx.Response, reply: str, now: datetime, max_retry_after_s: float = RETRY_AFTER_MAX_S
) -> DeliveryError:
    """The API's throttle: the job waits its Retry-After in the queue, not as a failure; a
    throttle that names no time is a failed attempt, spaced by the retry policy."""
    retry_after_s = retry_after_of(response, now, max_retry_after_s)
    if retry_after_s is None:
        return ApiTransient(f"the mail API is throttling: {reply}", reply)
    return MustWait(now + timedelta(seconds=retry_after_s), WaitKind.PACED, reply)


class ApiClient:
    """One HTTPS client per API: connections are reused across jobs and mailboxes."""

    def __init__(
        self,
        base_url: str,
        ca_bundle: Path | None,
        timeout_s: float,
        clock: Callable[[], datetime],
        retry_after_max_s: float = RETRY_AFTER_MAX_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.retry_after_max_s = retry_after_max_s
        context: ssl.SSLContext = tls_context(ca_bundle)
        self.http = httpx.AsyncClient(verify=context, timeout=timeout_s, trust_env=False)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self.http.request(
                method, url, headers=headers, content=content, json=json, params=params
            )
        except httpx.HTTPError as exc:
            # No answer, or one that cannot be read: nothing to go by, try again later.
            raise ApiTransient(f"the mail API did not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.http.aclose()
