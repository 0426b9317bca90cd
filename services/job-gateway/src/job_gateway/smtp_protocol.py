"""aiosmtpd's SMTP server as the listener needs it: devices' credentials checked against the
device directory, connections counted against the listener's limits (`smtp_connections`),
a 421 before a connection is closed for silence, and DATA read into a spooled file
(`smtp_data`) instead of aiosmtpd's lines in memory.

Until a connection has signed in (AUTH, or MAIL FROM from an allowlisted address) it is a
stranger holding one of the listener's connections: it may be silent for less
(`smtp_sign_in_idle_timeout_s`) and must sign in within `smtp_sign_in_within_s` of its
accept, however busy it keeps itself with NOOPs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from .domain import DeviceLogin
from .errors import Unauthorized
from .ratelimit import TokenReservation
from .smtp_connections import ConnectionLimits, peer_source
from .smtp_data import DataSpool
from .submission_limits import Hold

if TYPE_CHECKING:
    from .smtp_listener import SubmissionHandler

log = logging.getLogger("job-gateway.smtp")


class SpooledEnvelope(Envelope):
    """aiosmtpd's envelope with the message in a spooled file instead of `content`."""

    def __init__(self) -> None:
        super().__init__()
        self.spool: DataSpool | None = None
        self.hold: Hold | None = None
        self.rate: TokenReservation | None = None  # the job's token, taken at MAIL FROM


class DeviceSMTP(SMTP):
    """aiosmtpd's server with credentials checked against the device directory, connections
    counted against the listener's limits, and DATA read into a spooled file."""

    def __init__(self, handler: SubmissionHandler, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handler, authenticator=self._parse_only, **kwargs)
        self.directory = handler.directory
        self.settings = handler.settings
        self.in_flight = handler.intake.in_flight
        self.limits = limits
        self.address: str | None = None  # once admitted: the source the count is released for
        self.refused = False
        self.accepted_at = self.loop.time()
        self.sign_in_timer = False  # the running timer is the one for a connection not signed in
        self.lost = False

    def admitted(self, source: str) -> None:
        """Counted already, at accept (the implicit-TLS port): released when it is lost."""
        self.address = source

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.address is None and not self.refused:  # not the call STARTTLS makes again
            source = peer_source(transport)
            refusal = self.limits.admit(source)
            if refusal is not None:
                self.refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(f"421 4.7.0 {self.hostname} {refusal}\r\n".encode())
                transport.close()
                return
            self.address = source
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused or self.lost:
            return  # aiosmtpd never served it, or its end was handled already
        self.lost = True
        try:
            self._refund_rate()
            if self.session is not None:  # None: a TLS handshake on the implicit port failed
                super().connection_lost(error)
        finally:
            address, self.address = self.address, None
            if address is not None:
                self.limits.release(address)

    @property
    def signed_in(self) -> bool:
        return self.session is not None and (self.session.authenticated or self.session.auth_data is not None)

    def _reset_timeout(self, duration: float | None = None) -> None:
        self.sign_in_timer = duration is None and not self.signed_in
        if self.sign_in_timer:
            left = self.accepted_at + self.settings.smtp_sign_in_within_s - self.loop.time()
            idle = min(self.settings.smtp_sign_in_idle_timeout_s, self.settings.smtp_idle_timeout_s)
            duration = max(min(idle, left), 0.001)
        super()._reset_timeout(duration)

    def _timeout_cb(self) -> None:
        if self.sign_in_timer and self.signed_in:
            self._reset_timeout()  # signed in since it was armed: the ordinary idle time, from now
            return
        if self._original_transport is not None and self.session is not None and self.session.ssl is None:
            # Silent inside its STARTTLS handshake. Closing the TLS layer then ends the
            # handshake without asyncio telling this protocol the connection is lost, and the
            # client's count would stay taken for good: end the socket and the session here.
            original = self._original_transport
            if isinstance(original, asyncio.WriteTransport):
                original.abort()
            else:
                original.close()
            self.connection_lost(TimeoutError("the STARTTLS handshake was not finished in time"))
            return
        if isinstance(self.transport, asyncio.WriteTransport) and not self.transport.is_closing():
            self.transport.write(f"421 4.4.2 {self.hostname} timeout, closing the connection\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it untyped

    def _create_envelope(self) -> SpooledEnvelope:
        # RSET, HELO/EHLO and the end of DATA start a new envelope: a token the old one took
        # at MAIL FROM and no job used is the device's again.
        self._refund_rate()
        return SpooledEnvelope()

    def _refund_rate(self) -> None:
        envelope = getattr(self, "envelope", None)  # none yet while aiosmtpd builds the server
        if isinstance(envelope, SpooledEnvelope) and envelope.rate is not None:
            envelope.rate.refund()

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
        # Checking the secret is fleetmail's time, not the client's silence.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            device = await self.directory.authenticate(login, secret)
        except Unauthorized:
            log.info(
                "SMTP AUTH refused for device %r from %s",
                login[:64],
                self.session.peer if self.session else "?",
            )
            return AuthResult(success=False, handled=False)
        finally:
            self._reset_timeout()
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
        with self._data_hold() as hold:
            await self._receive(envelope, hold)

    @contextmanager
    def _data_hold(self) -> Iterator[Hold | None]:
        """The device's hold on its tenant's bytes in flight for this message: it grows as
        DATA is spooled and parsed, and is released however the message ends (taken in,
        refused, the connection broken or timed out)."""
        login = self.session.auth_data if self.session else None
        if not isinstance(login, DeviceLogin):
            yield None  # no device, no job: the handler refuses it
            return
        with self.in_flight.hold(login.device.tenant_id, login.device.device_id) as hold:
            yield hold

    async def _refuse_early(self, spool: DataSpool) -> None:
        """A message refused while it streams is told so at once; the rest of its DATA is read
        and dropped, and its end gets no other reply."""
        if spool.refusal is not None and not spool.refusal_sent:
            spool.refusal_sent = True
            await self.push(self.event_handler.reply(spool.refusal))

    async def _receive(self, envelope: SpooledEnvelope, hold: Hold | None) -> None:
        spool = DataSpool(self.data_size_limit, self.settings.smtp_spool_bytes, hold)
        try:
            await self._read_data(spool)
        except BaseException:
            spool.close()
            raise
        if spool.refusal is not None:  # refused while it streamed (`_refuse_early`)
            spool.close()
            self._reset_timeout()
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        if spool.too_large:
            spool.close()
            self._reset_timeout()
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 5.3.4 Error: Too much mail data")
            return
        envelope.spool, envelope.hold = spool, hold
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
            await self._refuse_early(spool)
            now = self.loop.time()
            if now - armed >= 1:  # a timer per second of progress, not per line
                armed = now
                self._reset_timeout(max(min(idle, deadline - now), 0.001))
        raise ConnectionResetError("the connection closed during DATA")
