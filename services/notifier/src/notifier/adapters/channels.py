"""The channels' real senders: webhooks over HTTP, e-mail through the operator's relay.

E-mail goes through the notifier's own SMTP settings (an operator's relay), never through a
tenant's grant: the grant that failed is often the very cause of the alert.

A webhook URL is the tenant's: its host is resolved once per connection, every address is
checked against the operator's outbound rule (`fleetmail_runtime.outbound`) and the connection
goes to a checked address, while TLS and the Host header keep the URL's name. A refused one is
`NoticeRefused`, naming the rule; what an endpoint answered is never shown beyond its status.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import httpcore
import httpx
from fleetmail_runtime.outbound import DestinationRefused, OutboundPolicy

from ..errors import MailRelayFailed, NoticeRefused, WebhookFailed


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, connecting only to addresses the outbound rule allows."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - the signature is httpcore's
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve_allowed(host, port)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self._network.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the signature is httpcore's
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are called over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `CheckedNetwork`. httpx takes no network of its own choosing, so
    its connection pool is replaced by one built the same way with that network."""

    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=CheckedNetwork(policy),
        )


class HttpWebhookSender:
    def __init__(self, policy: OutboundPolicy, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=CheckedTransport(policy))

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            response = await self._http.post(url, content=body, headers=dict(headers))
        except DestinationRefused as exc:
            raise NoticeRefused(f"webhook: {exc}") from None
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
