"""A tenant's outbound proxy (the device's proxy setting) carries its token traffic."""

import asyncio
import contextlib

import httpx
from fleetmail_contracts.tokens import AccessTokenOutcome
from fleetmail_devkit.ports import free_port
from fleetmail_devkit.probes import request_tokens, tenant_with_administrator_grant

from tests.utils import eventually


class ConnectProxy:
    """An HTTP CONNECT proxy on loopback that counts the tunnels it opens."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tunnels: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_refresh_goes_through_the_tenants_proxy(stack, emulator_http) -> None:
    proxy = ConnectProxy()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", proxy.port)
    try:
        principal = await tenant_with_administrator_grant(stack, emulator_http)
        headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers) as admin:
            settings = (await admin.get(f"/v1/admin/tenants/{principal.tenant_id}")).json()
            settings["proxy_url"] = f"http://127.0.0.1:{proxy.port}"
            assert (
                await admin.put(f"/v1/admin/tenants/{principal.tenant_id}", json=settings)
            ).status_code == 200

        async def refreshed_through_the_proxy() -> bool:
            # The settings reach token-service through the KV watch: refresh until they have.
            reply = (await request_tokens(stack, principal, 1, force_refresh=True))[0]
            assert reply.outcome is AccessTokenOutcome.GRANTED
            return bool(proxy.tunnels)

        await eventually(refreshed_through_the_proxy, within=10, every=0.2, what="a tunnel through the proxy")
        assert proxy.tunnels == [f"127.0.0.1:{stack.ports.microsoft}"] * len(proxy.tunnels)
    finally:
        server.close()
