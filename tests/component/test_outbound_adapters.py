"""The outbound rule where connections are made, with the loopback exception switched off:
the real webhook sender (notifier), SMTP transport (mail-service) and provider session through
a tenant's proxy (token-service) are pointed at a listener this test runs on loopback, by
address and by a name that resolves to it. Nothing may reach the listener, and the error says
which rule refused it. With loopback allowed, the same call does reach it: the listener
would notice a connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from fleetmail_contracts.tenants import SmtpSecurity, SmtpSettings
from fleetmail_runtime.outbound import ALLOWED_RANGES_SETTING, LOOPBACK_RANGES, OutboundPolicy
from mail_service.adapters.smtp import SmtpDelivery
from mail_service.errors import DestinationNotAllowed, SmtpTransient
from mail_service.ports import Credentials
from notifier.adapters.channels import HttpWebhookSender
from notifier.errors import NoticeRefused, WebhookFailed
from token_service.adapters.http import TENANT_PROXY_SETTING, Proxy, provider_session
from token_service.errors import ConfigurationError, ProviderUnavailable

from tests.contracts.mail import message_for

NOTHING = OutboundPolicy()
LOOPBACK = OutboundPolicy.of(LOOPBACK_RANGES)
SENDER = "scanner@acme.example"


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that counts connections and answers each with `greeting`
    (after the request's head, for HTTP)."""

    greeting: bytes
    reads_first: bool
    connections: int = 0
    port: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.reads_first:
            await reader.readuntil(b"\r\n\r\n")
        writer.write(self.greeting)
        await writer.drain()
        writer.close()


async def listening(greeting: bytes, *, reads_first: bool) -> AsyncIterator[Listener]:
    listener = Listener(greeting, reads_first)
    listener.server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    listener.port = listener.server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        listener.server.close()
        await listener.server.wait_closed()


@pytest.fixture
async def http_listener() -> AsyncIterator[Listener]:
    async for listener in listening(
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", reads_first=True
    ):
        yield listener


@pytest.fixture
async def smtp_listener() -> AsyncIterator[Listener]:
    async for listener in listening(b"421 4.3.2 not today\r\n", reads_first=False):
        yield listener


HOSTS = ["127.0.0.1", "localhost", "0x7f.1", "2130706433"]


@pytest.mark.parametrize("host", HOSTS)
async def test_a_webhook_to_loopback_is_refused_before_connecting(http_listener: Listener, host: str) -> None:
    sender = HttpWebhookSender(NOTHING, timeout_s=5)
    try:
        with pytest.raises(NoticeRefused, match=r"loopback range.*" + ALLOWED_RANGES_SETTING) as refused:
            await sender.post(f"http://{host}:{http_listener.port}/hook", b"{}", {})
    finally:
        await sender.close()
    assert "502" not in str(refused.value)
    assert http_listener.connections == 0


async def test_a_webhook_in_an_allowed_range_is_called(http_listener: Listener) -> None:
    sender = HttpWebhookSender(LOOPBACK, timeout_s=5)
    try:
        with pytest.raises(WebhookFailed, match="HTTP 502"):
            await sender.post(f"http://localhost:{http_listener.port}/hook", b"{}", {})
    finally:
        await sender.close()
    assert http_listener.connections == 1


async def send_to(policy: OutboundPolicy, host: str, port: int) -> None:
    transport = SmtpDelivery(None, timeout_s=5, helo_name="fleetmail.test", outbound=policy)
    _, message, recipients = message_for(("x@fabrikam.example",), SENDER)
    try:
        server = SmtpSettings(host=host, port=port, security=SmtpSecurity.NONE)
        await transport.send(server, Credentials(SENDER, password="pw"), message, recipients)
    finally:
        await transport.close()


@pytest.mark.parametrize("host", HOSTS)
async def test_a_tenants_smtp_server_on_loopback_is_refused_before_connecting(
    smtp_listener: Listener, host: str
) -> None:
    with pytest.raises(DestinationNotAllowed, match=r"loopback range") as refused:
        await send_to(NOTHING, host, smtp_listener.port)
    assert "421" not in str(refused.value) and ALLOWED_RANGES_SETTING in (refused.value.remedy or "")
    assert smtp_listener.connections == 0


async def test_a_tenants_smtp_server_in_an_allowed_range_is_connected_to(smtp_listener: Listener) -> None:
    with pytest.raises(SmtpTransient):
        await send_to(LOOPBACK, "localhost", smtp_listener.port)
    assert smtp_listener.connections == 1


def through_proxy(policy: OutboundPolicy, proxy_url: str) -> None:
    with provider_session(
        None, Proxy.checked(proxy_url, TENANT_PROXY_SETTING), 5, outbound=policy
    ) as session:
        # Never reached: a proxied request's only connection is to the proxy.
        session.get("https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration")


@pytest.mark.parametrize("host", HOSTS)
async def test_a_tenants_proxy_on_loopback_is_refused_before_connecting(
    http_listener: Listener, host: str
) -> None:
    proxy_url = f"http://user:secret@{host}:{http_listener.port}"
    with pytest.raises(ConfigurationError, match=r"proxy_url|loopback range") as refused:
        await asyncio.to_thread(through_proxy, NOTHING, proxy_url)
    assert refused.value.setting == "proxy_url" and "loopback range" in str(refused.value)
    assert "secret" not in str(refused.value)
    assert http_listener.connections == 0


async def test_a_tenants_proxy_in_an_allowed_range_is_used(http_listener: Listener) -> None:
    # The listener answers CONNECT with 502: the proxy was asked, and could not open the tunnel.
    with pytest.raises(ProviderUnavailable, match=r"could not open the tunnel .*HTTP 502"):
        await asyncio.to_thread(through_proxy, LOOPBACK, f"http://localhost:{http_listener.port}")
    assert http_listener.connections == 1


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", "asks for credentials"),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "refused the tunnel"),
    ],
)
async def test_a_proxy_that_refuses_the_tunnel_is_a_configuration_error_naming_it(
    answer: bytes, refused: str
) -> None:
    async for listener in listening(answer, reads_first=True):
        proxy_url = f"http://site:Pr0xy-Secret@127.0.0.1:{listener.port}"
        with pytest.raises(ConfigurationError, match=refused) as failed:
            await asyncio.to_thread(through_proxy, LOOPBACK, proxy_url)
        assert failed.value.setting == "proxy_url"
        assert f"http://127.0.0.1:{listener.port}" in str(failed.value)
        assert "Pr0xy-Secret" not in str(failed.value)
        assert listener.connections == 1


async def test_a_proxy_that_does_not_answer_is_unavailable_for_now() -> None:
    async for listener in listening(b"", reads_first=True):
        port = listener.port
    # The listener is closed: nothing accepts on its port any more.
    with pytest.raises(ProviderUnavailable, match=r"could not be reached") as failed:
        await asyncio.to_thread(through_proxy, LOOPBACK, f"http://site:Pr0xy-Secret@127.0.0.1:{port}")
    assert "proxy_url" in str(failed.value) and "Pr0xy-Secret" not in str(failed.value)
