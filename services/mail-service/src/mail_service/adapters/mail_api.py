"""What the Graph and Gmail API transports share: the HTTP client, the message as the APIs
take it (the SMTP path's MIME with its Bcc header: an API reads the recipients from the
headers, where SMTP has an envelope), and the classification of answers every API gives
alike (401, 429, 5xx, no answer)."""

from __future__ import annotations

import email.utils
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from ..domain.limits import WaitKind
from ..domain.mime import AttachmentSource, MimeMessage
from ..errors import ApiTransient, DeliveryError, MustWait, TokenRejected
from .smtp import tls_context

DEFAULT_RETRY_AFTER_S = 1.0


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


async def raw_chunks(attachment: AttachmentSource, size: int) -> AsyncIterator[bytes]:
    """An attachment's bytes in pieces of exactly `size` (the last one shorter)."""
    pending = b""
    async for block in attachment.open():
        pending += block
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def retry_after_of(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", DEFAULT_RETRY_AFTER_S)))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def common_error(response: httpx.Response, reply: str, now: datetime) -> DeliveryError | None:
    """What 401, 429 and 5xx mean whichever API said them; None for the others."""
    if response.status_code == 401:
        return TokenRejected(reply)
    if response.status_code == 429:
        # The API's throttle: the job waits its Retry-After in the queue, not as a failure.
        until = now + timedelta(seconds=retry_after_of(response))
        return MustWait(until, WaitKind.PACED, reply)
    if response.status_code >= 500 or response.status_code == 408:
        return ApiTransient(f"the mail API failed for now: {reply}", reply, retry_after_of(response))
    return None


class ApiClient:
    """One HTTPS client per API: connections are reused across jobs and mailboxes."""

    def __init__(
        self, base_url: str, ca_bundle: Path | None, timeout_s: float, clock: Callable[[], datetime]
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
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
        except httpx.TransportError as exc:
            raise ApiTransient(f"the mail API did not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.http.aclose()
