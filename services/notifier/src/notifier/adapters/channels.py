"""The channels' real senders: webhooks over HTTP, e-mail through the operator's relay.

E-mail goes through the notifier's own SMTP settings (an operator's relay), never through a
tenant's grant: the grant that failed is often the very cause of the alert.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import httpx

from ..errors import MailRelayFailed, WebhookFailed


class HttpWebhookSender:
    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            response = await self._http.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise WebhookFailed(type(exc).__name__) from exc
        if not response.is_success:
            raise WebhookFailed(f"HTTP {response.status_code}")

    async def close(self) -> None:
        await self._http.aclose()


@dataclass(frozen=True)
class MailRelay:
    """The notifier's own way out for e-mail (settings), independent of any tenant grant."""

    host: str
    port: int
    security: str
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None


class RelayMailSender:
    def __init__(self, relay: MailRelay) -> None:
        self.relay = relay

    @property
    def sender(self) -> str:
        return self.relay.sender

    async def send(self, message: EmailMessage) -> None:
        relay = self.relay
        context = ssl.create_default_context(cafile=relay.ca_bundle) if relay.ca_bundle else None
        try:
            await aiosmtplib.send(
                message,
                hostname=relay.host,
                port=relay.port,
                start_tls=relay.security == "starttls",
                use_tls=relay.security == "implicit_tls",
                username=relay.username,
                password=relay.password,
                tls_context=context,
                timeout=30,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailRelayFailed(f"{type(exc).__name__}: {exc}"[:300]) from exc
