"""The SMTP emulator accepts only what the real servers accept, with their replies."""

import ssl
import uuid
from email import message_from_bytes
from email.message import EmailMessage

import aiosmtplib
import httpx
import jwt
import msal
import pytest
import requests
from fleetmail_devkit.emulators.smtp_limits import DEFAULT_LIMITS
from fleetmail_devkit.stack import DEMO_CLIENT_ID, Stack
from fleetmail_runtime import smtp_replies


async def microsoft_token(emulators: Stack, http: httpx.AsyncClient, user: str) -> str:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulators.ca_file)
    app = msal.PublicClientApplication(
        DEMO_CLIENT_ID,
        authority=f"{emulators.microsoft_url}/contoso",
        instance_discovery=False,
        http_client=session,
    )
    flow = app.initiate_device_flow(scopes=["https://outlook.office.com/SMTP.Send"])
    await http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": flow["user_code"], "user": user},
    )
    return app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)["access_token"]


def client(emulators: Stack, implicit: bool = False) -> aiosmtplib.SMTP:
    context = ssl.create_default_context(cafile=str(emulators.ca_file))
    if implicit:
        return aiosmtplib.SMTP(
            hostname="127.0.0.1", port=emulators.ports.smtp_tls, use_tls=True, tls_context=context
        )
    return aiosmtplib.SMTP(
        hostname="127.0.0.1", port=emulators.ports.smtp_starttls, start_tls=True, tls_context=context
    )


def message(sender: str) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "to@fabrikam.example", f"test {uuid.uuid4().hex}"
    m.set_content("hello")
    return m


@pytest.fixture
def user() -> str:
    return f"smtp-{uuid.uuid4().hex[:6]}@contoso.example"


async def test_exchange_offers_login_and_xoauth2_over_starttls_only(emulators, emulator_http, user) -> None:
    """smtp.office365.com: port 587 with STARTTLS, AUTH LOGIN and XOAUTH2 (no PLAIN), no
    implicit-TLS port."""
    token = await microsoft_token(emulators, emulator_http, user)
    async with client(emulators) as smtp:
        await smtp.ehlo()
        assert smtp.esmtp_extensions["auth"].split() == ["LOGIN", "XOAUTH2"]
        await smtp.auth_xoauth2(user, token)
        await smtp.send_message(message(user))
    with pytest.raises(aiosmtplib.SMTPConnectError):
        async with client(emulators, implicit=True):
            pass
    accepted = (await emulator_http.get(f"{emulators.smtp_control_url}/_emulator/messages")).json()
    mine = [m for m in accepted if m["auth_user"] == user]
    assert len(mine) == 1 and mine[0]["auth_mechanism"] == "XOAUTH2"


async def test_a_token_for_another_user_or_garbage_is_refused(emulators, emulator_http, user) -> None:
    token = await microsoft_token(emulators, emulator_http, user)
    for who, what in (("someone.else@contoso.example", token), (user, "not-a-token")):
        async with client(emulators) as smtp:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                await smtp.auth_xoauth2(who, what)
            assert caught.value.code == 535 and "5.7.3" in caught.value.message


async def test_smtp_auth_disabled_mailbox_gets_5_7_139(emulators, emulator_http, user) -> None:
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/mailboxes",
        json={"address": user, "smtp_auth_disabled": True},
    )
    token = await microsoft_token(emulators, emulator_http, user)
    async with client(emulators) as smtp:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await smtp.auth_xoauth2(user, token)
    assert caught.value.code == 535
    assert caught.value.message == smtp_replies.SMTP_AUTH_DISABLED_MAILBOX.text


async def test_smtp_auth_is_off_unless_enabled_and_security_defaults_refuse_passwords(
    emulators, emulator_http
) -> None:
    """Exchange's defaults (tenants created since 2020): SMTP AUTH off for the organisation,
    so a mailbox submits only once it is enabled for it; with security defaults on, password
    sign-ins get their own 5.7.139."""
    from fleetmail_devkit.probes import smtp_emulator

    async with smtp_emulator(emulators, "microsoft", smtp_auth_enabled=False) as exchange:
        follows = f"follows-{uuid.uuid4().hex[:6]}@contoso.example"
        enabled = f"enabled-{uuid.uuid4().hex[:6]}@contoso.example"
        for address, switch in ((follows, None), (enabled, False)):
            await emulator_http.post(
                f"{exchange.control_url}/_emulator/mailboxes",
                json={"address": address, "password": "pw", "smtp_auth_disabled": switch},
            )
        context = ssl.create_default_context(cafile=str(emulators.ca_file))

        async def login(address: str) -> None:
            async with aiosmtplib.SMTP(
                hostname="127.0.0.1", port=exchange.port, start_tls=True, tls_context=context
            ) as smtp:
                await smtp.login(address, "pw")

        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as off:
            await login(follows)
        assert off.value.code == 535 and off.value.message == smtp_replies.SMTP_AUTH_DISABLED.text
        await login(enabled)
        await emulator_http.post(
            f"{exchange.control_url}/_emulator/settings", json={"security_defaults": True}
        )
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as locked:
            await login(enabled)
        assert smtp_replies.classify(535, locked.value.message)[1] is smtp_replies.SECURITY_DEFAULTS_LOCKED


async def graph_token(emulators: Stack, http: httpx.AsyncClient, user: str) -> str:
    started = await http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
        data={"client_id": DEMO_CLIENT_ID, "scope": "https://graph.microsoft.com/Mail.Send"},
    )
    flow = started.json()
    await http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": flow["user_code"], "user": user},
    )
    redeemed = await http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": DEMO_CLIENT_ID,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
        },
    )
    return str(redeemed.json()["access_token"])


async def test_a_graph_token_or_one_from_another_directory_is_refused_with_5_7_3(
    emulators, emulator_http, user
) -> None:
    """Exchange takes tokens for its own audience only, and from the mailbox's directory."""
    graph = await graph_token(emulators, emulator_http, user)
    assert jwt.decode(graph, options={"verify_signature": False})["aud"] == "https://graph.microsoft.com"
    smtp_token = await microsoft_token(emulators, emulator_http, user)
    mailboxes = f"{emulators.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailboxes, json={"address": user, "directory": "fabrikam"})
    for token in (graph, smtp_token):
        async with client(emulators) as smtp:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                await smtp.auth_xoauth2(user, token)
            assert caught.value.code == 535 and "5.7.3" in caught.value.message
    await emulator_http.post(mailboxes, json={"address": user, "directory": "contoso"})
    async with client(emulators) as smtp:
        await smtp.auth_xoauth2(user, smtp_token)


async def test_an_app_only_token_is_taken_only_after_admin_consent(emulators, emulator_http, user) -> None:
    """Client credentials give a token before consent too, but without the SMTP.SendAsApp
    role Exchange refuses it."""
    client_id, secret = f"daemon-{uuid.uuid4().hex[:8]}", "daemon-secret"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/apps", json={"client_id": client_id, "client_secret": secret}
    )
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/mailboxes", json={"address": user, "app_access": [client_id]}
    )

    async def app_token() -> str:
        answer = await emulator_http.post(
            f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
            data={
                "client_id": client_id,
                "client_secret": secret,
                "grant_type": "client_credentials",
                "scope": "https://outlook.office365.com/.default",
            },
        )
        return str(answer.json()["access_token"])

    async with client(emulators) as smtp:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await smtp.auth_xoauth2(user, await app_token())
        assert caught.value.code == 535 and "5.7.3" in caught.value.message
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/admin-consent",
        json={"client_id": client_id, "directory": "contoso"},
    )
    async with client(emulators) as smtp:
        await smtp.auth_xoauth2(user, await app_token())
        await smtp.send_message(message(user))


async def test_send_as_another_address_is_denied(emulators, emulator_http, user) -> None:
    """Another envelope sender: 550 5.7.60; another From: 554 5.2.252 SendAsDenied."""
    token = await microsoft_token(emulators, emulator_http, user)
    async with client(emulators) as smtp:
        await smtp.auth_xoauth2(user, token)
        with pytest.raises(aiosmtplib.SMTPDataError) as envelope:
            await smtp.send_message(message(user), sender="ceo@contoso.example")
        assert envelope.value.code == 550 and "5.7.60" in envelope.value.message
        with pytest.raises(aiosmtplib.SMTPDataError) as header:
            await smtp.send_message(message("ceo@contoso.example"), sender=user)
    assert header.value.code == 554
    assert f"{user} not allowed to send as ceo@contoso.example" in header.value.message
    assert smtp_replies.classify(554, header.value.message)[1] is smtp_replies.SEND_AS_DENIED_AT_SUBMISSION


async def test_basic_auth_then_its_removal(emulators, emulator_http, user) -> None:
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/mailboxes", json={"address": user, "password": "pw-123"}
    )
    async with client(emulators) as smtp:
        await smtp.login(user, "pw-123")
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/settings", json={"basic_auth_removed": True}
    )
    try:
        async with client(emulators) as smtp:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                await smtp.login(user, "pw-123")
        assert caught.value.code == 550 and "5.7.30" in caught.value.message
    finally:
        await emulator_http.post(
            f"{emulators.smtp_control_url}/_emulator/settings", json={"basic_auth_removed": False}
        )


async def test_injected_transient_failure(emulators, emulator_http, user) -> None:
    token = await microsoft_token(emulators, emulator_http, user)
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/faults", json={"stage": "mail", "code": 451, "count": 1}
    )
    async with client(emulators) as smtp:
        await smtp.auth_xoauth2(user, token)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await smtp.send_message(message(user))
        assert caught.value.code == 451


async def basic_mailbox(emulators, emulator_http, control_url: str | None = None, **limits) -> str:
    """A password mailbox of the test's own, with the limits given (the rest its provider's)."""
    address = f"limits-{uuid.uuid4().hex[:8]}@contoso.example"
    body: dict = {"address": address, "password": "pw-limits"}
    if limits:
        body["limits"] = limits
    answer = await emulator_http.post(
        f"{control_url or emulators.smtp_control_url}/_emulator/mailboxes", json=body
    )
    assert answer.status_code == 200, answer.text
    return address


async def given(emulator_http, control_url: str, address: str, code: int | None = None) -> list[dict]:
    params: dict = {"user": address}
    if code is not None:
        params["code"] = code
    return (await emulator_http.get(f"{control_url}/_emulator/replies", params=params)).json()


async def test_a_fourth_message_in_submission_at_once_gets_432(emulators, emulator_http) -> None:
    address = await basic_mailbox(emulators, emulator_http)
    sessions = [client(emulators) for _ in range(4)]
    for smtp in sessions:
        await smtp.connect()
        await smtp.login(address, "pw-limits")
    try:
        for smtp in sessions[:3]:
            await smtp.mail(address)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await sessions[3].mail(address)
        assert caught.value.code == 432 and caught.value.message == smtp_replies.CONCURRENCY_LIMIT.text
        await sessions[0].rset()  # one leaves submission: the next one is taken
        await sessions[3].mail(address)
    finally:
        for smtp in sessions:
            smtp.close()
    assert [r["code"] for r in await given(emulator_http, emulators.smtp_control_url, address)] == [432]


def test_the_default_limits_are_the_providers_documented_figures() -> None:
    exchange, gmail = DEFAULT_LIMITS["microsoft"], DEFAULT_LIMITS["gmail"]
    assert (exchange.concurrent, exchange.per_minute, exchange.rate_window_s) == (3, 30, 60.0)
    assert (exchange.daily, exchange.daily_counts) == (10_000, "recipients")
    assert exchange.max_message_bytes == 35 * 1024 * 1024 and exchange.max_recipients == 500
    assert (gmail.daily, gmail.daily_counts) == (2_000, "messages")
    assert gmail.max_message_bytes == 35_882_577 and gmail.max_recipients == 100


async def test_over_the_rate_a_minute_the_answer_is_held_back_not_refused(emulators, emulator_http) -> None:
    # Two a second rather than two a minute: the third answer is held back a second, not 60.
    address = await basic_mailbox(emulators, emulator_http, per_minute=2, rate_window_s=1.0)
    async with client(emulators) as smtp:
        await smtp.login(address, "pw-limits")
        for _ in range(3):
            await smtp.send_message(message(address))
    [held] = await given(emulator_http, emulators.smtp_control_url, address)
    assert held["stage"] == "rate" and held["code"] == 250, held


async def test_the_daily_recipient_quota_refuses_until_the_day_has_passed(emulators, emulator_http) -> None:
    address = await basic_mailbox(emulators, emulator_http, daily=3)
    control = emulators.smtp_control_url
    async with client(emulators) as smtp:
        await smtp.login(address, "pw-limits")
        await smtp.sendmail(
            address, ["a@fabrikam.example", "b@fabrikam.example"], message(address).as_bytes()
        )
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await smtp.sendmail(
                address, ["c@fabrikam.example", "d@fabrikam.example"], message(address).as_bytes()
            )
        assert caught.value.code == 554 and "SubmissionQuotaExceededException" in caught.value.message
        assert smtp_replies.classify(caught.value.code, caught.value.message)[1] is (
            smtp_replies.SUBMISSION_QUOTA_EXCEEDED
        )
        await emulator_http.post(f"{control}/_emulator/clock", json={"advance_s": 86_400})
        await smtp.sendmail(
            address, ["c@fabrikam.example", "d@fabrikam.example"], message(address).as_bytes()
        )


async def test_size_recipients_lines_and_a_full_mailbox(emulators, emulator_http) -> None:
    address = await basic_mailbox(emulators, emulator_http, max_message_bytes=2000, max_recipients=2)
    control = emulators.smtp_control_url
    async with client(emulators) as smtp:
        await smtp.login(address, "pw-limits")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as too_big:
            await smtp.mail(address, options=["SIZE=5000"])
        assert too_big.value.code == 552 and "5.3.4" in too_big.value.message
        await smtp.rset()
        refused = (
            await smtp.sendmail(
                address, ["a@x.example", "b@x.example", "c@x.example"], b"Subject: r\r\n\r\nhi\r\n"
            )
        )[0]
        assert refused["c@x.example"][0] == 452 and "4.5.3" in refused["c@x.example"][1]
        # A client that declares no SIZE is held to the limit at the end of DATA.
        await smtp.mail(address)
        await smtp.rcpt("a@x.example")
        with pytest.raises(aiosmtplib.SMTPDataError) as too_big_data:
            await smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40)
        assert too_big_data.value.code == 552 and "5.3.4" in too_big_data.value.message
        with pytest.raises(aiosmtplib.SMTPDataError) as long_line:
            await smtp.sendmail(address, ["a@x.example"], b"Subject: l\r\n\r\n" + b"x" * 999 + b"\r\n")
        assert long_line.value.code == 500 and "5.3.3" in long_line.value.message
    full = f"full-{uuid.uuid4().hex[:8]}@contoso.example"
    await emulator_http.post(
        f"{control}/_emulator/mailboxes", json={"address": full, "password": "pw", "full": True}
    )
    async with client(emulators) as smtp:
        await smtp.login(full, "pw")
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await smtp.send_message(message(full))
    assert (
        caught.value.code == 554
        and smtp_replies.classify(554, caught.value.message)[1] is smtp_replies.MAILBOX_FULL
    )


async def test_gmail_daily_messages_over_a_rolling_day_and_its_limits(emulators, emulator_http) -> None:
    from fleetmail_devkit.probes import smtp_emulator

    async with smtp_emulator(emulators, "gmail") as gmail:
        address = await basic_mailbox(emulators, emulator_http, gmail.control_url, daily=2)
        context = ssl.create_default_context(cafile=str(emulators.ca_file))
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=gmail.port, start_tls=True, tls_context=context
        ) as smtp:
            # smtp.gmail.com's own figure, not 35 MB.
            await smtp.ehlo()
            assert smtp.esmtp_extensions["size"] == "35882577"
            await smtp.login(address, "pw-limits")
            await smtp.send_message(message(address))
            await emulator_http.post(f"{gmail.control_url}/_emulator/clock", json={"advance_s": 3600})
            await smtp.send_message(message(address))
            with pytest.raises(aiosmtplib.SMTPDataError) as caught:
                await smtp.send_message(message(address))
            assert (
                caught.value.code == 550 and "5.4.5 Daily user sending limit exceeded" in caught.value.message
            )
            # Rolling: a day after the first message, one more may go; not two.
            await emulator_http.post(
                f"{gmail.control_url}/_emulator/clock", json={"advance_s": 86_400 - 3600}
            )
            await smtp.send_message(message(address))
            with pytest.raises(aiosmtplib.SMTPDataError):
                await smtp.send_message(message(address))
            recipients = [f"r{i}@x.example" for i in range(101)]
            await emulator_http.post(f"{gmail.control_url}/_emulator/clock", json={"advance_s": 86_400})
            refused = (await smtp.sendmail(address, recipients, b"Subject: r\r\n\r\nhi\r\n"))[0]
        assert list(refused) == ["r100@x.example"]


async def test_gmail_password_replies_and_its_from_rewriting(emulators, emulator_http) -> None:
    """Gmail: 534-5.7.9 for the account's own password where 2-Step Verification wants an app
    password, 535-5.7.8 for a wrong one; a From that is not the account's is rewritten."""
    from fleetmail_devkit.probes import smtp_emulator

    async with smtp_emulator(emulators, "gmail") as gmail:
        address = f"g-{uuid.uuid4().hex[:6]}@gmail-tenant.example"
        await emulator_http.post(
            f"{gmail.control_url}/_emulator/mailboxes",
            json={"address": address, "password": "account-pw", "app_password": "abcdefghijklmnop"},
        )
        context = ssl.create_default_context(cafile=str(emulators.ca_file))
        for password, code, known in (
            ("account-pw", 534, smtp_replies.GMAIL_APP_PASSWORD_REQUIRED),
            ("wrong", 535, smtp_replies.GMAIL_AUTH_FAILED),
        ):
            async with aiosmtplib.SMTP(
                hostname="127.0.0.1", port=gmail.tls_port, use_tls=True, tls_context=context
            ) as smtp:
                await smtp.ehlo()
                assert "PLAIN" in smtp.esmtp_extensions["auth"].split()
                with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                    await smtp.login(address, password)
            assert caught.value.code == code and smtp_replies.classify(code, caught.value.message)[1] is known
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=gmail.tls_port, use_tls=True, tls_context=context
        ) as smtp:
            await smtp.login(address, "abcdefghijklmnop")
            await smtp.send_message(message("Head Office <ceo@contoso.example>"), sender=address)
        [stored] = (await emulator_http.get(f"{gmail.control_url}/_emulator/messages")).json()
        raw = (await emulator_http.get(f"{gmail.control_url}/_emulator/messages/{stored['id']}/raw")).content
    rewritten = message_from_bytes(raw)
    assert rewritten["From"] == f"Head Office <{address}>"
    assert rewritten["X-Google-Original-From"] == "Head Office <ceo@contoso.example>"
