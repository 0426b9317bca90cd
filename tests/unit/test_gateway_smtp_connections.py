"""The SMTP listener's accounting, without a server: which source a connection counts against,
the counts, and the device's token taken at MAIL FROM (the real listener is driven in
tests/security/test_smtp_listener_resources.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import Session
from fleetmail_contracts.jobs import JobFunction
from job_gateway.domain import Device, DeviceLogin
from job_gateway.ratelimit import RateLimiter
from job_gateway.settings import GatewaySettings
from job_gateway.smtp_connections import ConnectionLimits, source_key
from job_gateway.smtp_listener import SubmissionHandler
from job_gateway.smtp_protocol import DeviceSMTP, SpooledEnvelope


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),  # an IPv4 client of a dual-stack socket
        ("::ffff:7f00:1", "127.0.0.1"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same host, rotated
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("unix-socket", "unix-socket"),
    ],
)
def test_a_connection_counts_against_its_ipv4_address_or_its_ipv6_network(host: str, source: str) -> None:
    assert source_key(host) == source


def test_connections_are_capped_per_source_and_in_total(caplog: pytest.LogCaptureFixture) -> None:
    limits = ConnectionLimits(total=5, per_source=2)
    first, mapped = source_key("10.0.0.1"), source_key("::ffff:10.0.0.1")
    assert limits.admit(first) is None and limits.admit(mapped) is None
    with caplog.at_level(logging.WARNING, logger="job-gateway.smtp"):
        refusal = limits.admit(first)
        assert limits.admit(first) is not None
    assert refusal == "too many connections from 10.0.0.1; try again later"
    assert len(caplog.records) == 1  # a flood is logged at its first refusal, not a line each
    rotating = [limits.admit(source_key(f"2001:db8::{n:x}")) for n in range(1, 4)]
    assert rotating == [None, None, "too many connections from 2001:db8::/64; try again later"]
    assert limits.admit("10.0.0.3") is None
    assert limits.admit("10.0.0.4") == "too many connections; try again later"
    limits.release(first)
    assert limits.admit("10.0.0.4") is None
    assert limits.open == {"10.0.0.1": 1, "2001:db8::/64": 2, "10.0.0.3": 1, "10.0.0.4": 1}


async def test_a_device_with_one_token_passes_mail_from_in_one_session_only() -> None:
    """Its token is taken at MAIL FROM: the other sessions it opens meanwhile are refused
    before they send their message, and an envelope that ends without a job gives it back."""
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=lambda: 0.0)
    handler = SubmissionHandler(
        SimpleNamespace(limiter=limiter),  # type: ignore[arg-type]  # only its rate is asked
        SimpleNamespace(),  # type: ignore[arg-type]
        GatewaySettings(),
    )
    login = DeviceLogin(Device("mfp-1", "t1"), JobFunction.SCAN_TO_EMAIL, "auth")

    async def mail_from(envelope: SpooledEnvelope) -> str:
        session = Session(asyncio.get_running_loop())
        session.authenticated = True
        session.auth_data = login  # type: ignore[assignment]
        return await handler.handle_MAIL(None, session, envelope, "mfp@x.example", [])  # type: ignore[arg-type]

    first = SpooledEnvelope()
    replies = [await mail_from(first)] + [await mail_from(SpooledEnvelope()) for _ in range(3)]
    assert replies[0].startswith("250")
    for reply in replies[1:]:
        assert re.fullmatch(
            r"450 4\.7\.1 this device sent more than 1 jobs at once; try again in \d+ s", reply
        )
    assert first.rate is not None
    first.rate.refund()  # RSET, or the connection lost, before the message was queued
    again = SpooledEnvelope()
    assert (await mail_from(again)).startswith("250")
    assert again.rate is not None
    again.rate.keep()  # its job taken in
    again.rate.refund()
    assert (await mail_from(SpooledEnvelope())).startswith("450")


async def test_a_connection_not_signed_in_has_less_time_and_a_deadline() -> None:
    settings = GatewaySettings(
        smtp_idle_timeout_s=120, smtp_sign_in_idle_timeout_s=30, smtp_sign_in_within_s=50
    )
    handler = SimpleNamespace(directory=None, settings=settings, intake=SimpleNamespace(in_flight=None))
    server = DeviceSMTP(handler, ConnectionLimits(10, 10), timeout=120)  # type: ignore[arg-type]
    server.session = Session(server.loop)

    def armed_for() -> float:
        assert server._timeout_handle is not None
        return server._timeout_handle.when() - server.loop.time()

    server._reset_timeout()
    assert 29 < armed_for() <= 30
    server.accepted_at -= 40  # 10 s left to sign in
    server._reset_timeout()
    assert 9 < armed_for() <= 10
    server.session.authenticated = True
    server._timeout_cb()  # the stranger's timer, fired after the sign-in: the ordinary time from now
    assert 119 < armed_for() <= 120 and not server.sign_in_timer
    server._reset_timeout(5)  # DATA's own timers are left alone
    assert armed_for() <= 5
    assert server._timeout_handle is not None
    server._timeout_handle.cancel()
