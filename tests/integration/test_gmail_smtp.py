"""The SMTP emulator in Gmail's flavour: tokens checked through the Google emulator's tokeninfo."""

import base64
import json
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest
from fleetmail_devkit.probes import smtp_emulator
from fleetmail_runtime import smtp_replies

from tests.utils.google import authorize, register


@pytest.fixture(scope="module")
async def gmail_smtp(stack) -> AsyncIterator[int]:
    async with smtp_emulator(stack, "gmail") as emulator:
        yield emulator.port


def connect(stack, port: int) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=port,
        start_tls=True,
        tls_context=ssl.create_default_context(cafile=str(stack.ca_file)),
    )


async def test_google_token_is_accepted(stack, emulator_http, gmail_smtp) -> None:
    client_id, secret = await register(stack, emulator_http)
    tokens = await authorize(stack, emulator_http, client_id, secret, "g1@gmail.example", "v" * 50)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "g1@gmail.example", "x@example.com", "gmail"
    message.set_content("hi")
    async with connect(stack, gmail_smtp) as smtp:
        await smtp.auth_xoauth2("g1@gmail.example", tokens["access_token"])
        errors, reply = await smtp.send_message(message)
    assert errors == {} and "gsmtp" in reply


async def test_bad_token_gets_the_json_challenge_then_535(stack, gmail_smtp) -> None:
    async with connect(stack, gmail_smtp) as smtp:
        await smtp.ehlo()
        encoded = base64.b64encode(b"user=g2@gmail.example\x01auth=Bearer ya29.expired\x01\x01")
        challenge = await smtp.execute_command(b"AUTH", b"XOAUTH2", encoded)
        assert challenge.code == 334
        assert json.loads(base64.b64decode(challenge.message)) == json.loads(
            smtp_replies.GMAIL_XOAUTH2_CHALLENGE
        )
        final = await smtp.execute_command(b"")
        assert final.code == 535 and "5.7.8 Username and Password not accepted" in final.message
