"""The SMTP emulator in Gmail's flavour: tokens checked through the Google emulator's tokeninfo."""

import asyncio
import base64
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest
from fleetmail_devkit.ports import free_port, port_open
from fleetmail_runtime import smtp_replies

from .test_google_emulator import authorize, register


@pytest.fixture(scope="module")
async def gmail_smtp(stack) -> AsyncIterator[int]:
    port, tls_port, control = free_port(), free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetmail_devkit.emulators.serve",
        "smtp",
        "--flavour",
        "gmail",
        "--starttls-port",
        str(port),
        "--tls-port",
        str(tls_port),
        "--control-port",
        str(control),
        "--tls-dir",
        str(stack.data_dir / "tls"),
        "--maildir",
        str(stack.data_dir / "gmail-maildir"),
        "--microsoft-url",
        stack.microsoft_url,
        "--google-url",
        stack.google_url,
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ},
    )
    for _ in range(100):
        if port_open(port):
            break
        await asyncio.sleep(0.1)
    yield port
    process.terminate()
    await process.wait()


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
