"""aiosmtpd's SMTP server as the listener needs it: devices' credentials checked against the
device directory, connections counted against the listener's limits (`smtp_connections`),
a 421 before a connection is closed for silence, and DATA read into a spooled file
(`smtp_data`) instead of aiosmtpd's lines in memory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from .errors import Unauthorized
from .smtp_connections import ConnectionLimits
from .smtp_data import DataSpool

if TYPE_CHECKING:
    from .smtp_listener import SubmissionHandler

log = logging.getLogger("job-gateway.smtp")


class SpooledEnvelope(Envelope):
    """aiosmtpd's envelope with the message in a spooled file instead of `content`."""

    def __init__(self) -> None:
        super().__init__()
        self.spool: DataSpool | None = None


class DeviceSMTP(SMTP):
    """aiosmtpd's server with credentials checked against the device directory, connections
    counted against the listener's limits, and DATA read into a spooled file."""

    def __init__(self, handler: SubmissionHandler, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handler, authenticator=self._parse_only, **kwargs)
        self.directory = handler.directory
        self.settings = handler.settings
        self.limits = limits
        self.address: str | None = None  # once admitted; the count is released with it
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.address is None and not self.refused:  # not the call STARTTLS makes again
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if peer else ""
            refusal = self.limits.admit(address)
            if refusal is not None:
                self.refused = True
                if self.limits.worth_logging(address):
                    log.warning(
                        "SMTP connection from %s refused: %s (%d so far)",
                        address,
                        refusal,
                        self.limits.refused[address],
                    )
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(f"421 4.7.0 {self.hostname} {refusal}\r\n".encode())
                transport.close()
                return
            self.address = address
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return  # aiosmtpd never served it
        try:
            super().connection_lost(error)
        finally:
            address, self.address = self.address, None
            if address is not None:
                self.limits.release(address)

    def _timeout_cb(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport) and not self.transport.is_closing():
            self.transport.write(f"421 4.4.2 {self.hostname} timeout, closing the connection\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it untyped

    def _create_envelope(self) -> SpooledEnvelope:
        return SpooledEnvelope()

    @staticmethod
    def _parse_only(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        return AuthResult(success=True, auth_data=auth_data)

    async def _verified(self, result: AuthResult) -> AuthResult:
        if not result.success or not isinstance(result.auth_data, LoginPassword):
            return result
        login = result.auth_data.login.decode("utf-8", "replace")
        secret = result.auth_data.password.decode("utf-8", "replace")
        try:
            device = await self.directory.authenticate(login, secret)
        except Unauthorized:
            log.info(
                "SMTP AUTH refused for device %r from %s",
                login[:64],
                self.session.peer if self.session else "?",
            )
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=device)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_PLAIN(server, args))

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_LOGIN(server, args))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading into a `DataSpool` (see `smtp_data`): bounded in time as
        a whole (`smtp_data_timeout_s`) and between pieces (`smtp_idle_timeout_s`)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert isinstance(envelope, SpooledEnvelope)
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = DataSpool(self.data_size_limit, self.settings.smtp_spool_bytes)
        try:
            await self._read_data(spool)
        except BaseException:
            spool.close()
            raise
        if spool.too_large:
            spool.close()
            self._reset_timeout()
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 5.3.4 Error: Too much mail data")
            return
        envelope.spool = spool
        # Taking the job in is fleetmail's time, not the device's silence: no timeout meanwhile.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            spool.close()
            self._reset_timeout()
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self, spool: DataSpool) -> None:
        idle = self.settings.smtp_idle_timeout_s
        deadline = self.loop.time() + self.settings.smtp_data_timeout_s
        armed = self.loop.time()
        self._reset_timeout(min(idle, deadline - armed))
        while self.transport is not None:
            try:
                piece = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                # A line longer than the reader's buffer: taken in pieces, never whole.
                piece = await self._reader.read(exc.consumed)
            if spool.feed(piece):
                return
            now = self.loop.time()
            if now - armed >= 1:  # a timer per second of progress, not per line
                armed = now
                self._reset_timeout(max(min(idle, deadline - now), 0.001))
        raise ConnectionResetError("the connection closed during DATA")
