"""The SMTP emulator accepts only what the real servers accept, with their replies."""

import ssl
import uuid
from email.message import EmailMessage

import aiosmtplib
import httpx
import msal
import pytest
import requests
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


async def test_xoauth2_with_a_live_token_is_accepted_on_both_ports(emulators, emulator_http, user) -> None:
    token = await microsoft_token(emulators, emulator_http, user)
    for implicit in (False, True):
        async with client(emulators, implicit) as smtp:
            await smtp.auth_xoauth2(user, token)
            await smtp.send_message(message(user))
    accepted = (await emulator_http.get(f"{emulators.smtp_control_url}/_emulator/messages")).json()
    mine = [m for m in accepted if m["auth_user"] == user]
    assert len(mine) == 2 and all(m["auth_mechanism"] == "XOAUTH2" for m in mine)


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
    assert caught.value.code == 535 and caught.value.message == smtp_replies.SMTP_AUTH_DISABLED.text


async def test_send_as_another_address_is_denied(emulators, emulator_http, user) -> None:
    token = await microsoft_token(emulators, emulator_http, user)
    async with client(emulators) as smtp:
        await smtp.auth_xoauth2(user, token)
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await smtp.send_message(message("ceo@contoso.example"), sender=user)
    assert caught.value.code == 550 and "5.7.60" in caught.value.message


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
