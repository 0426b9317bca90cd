"""The Gmail API emulator answers as the Gmail API's `users.messages.send` does: what it delivers
is read at the Gmail SMTP emulator's control API, as an SMTP delivery is, and counts against the
same mailbox's daily limit."""

import base64
import hashlib
import os
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import EmailMessage

import aiosmtplib
import httpx
import jwt
import pytest
from fleetmail_devkit.probes import SmtpEmulator, smtp_emulator
from fleetmail_devkit.stack import Stack

from tests.utils.google import MAIL, authorize, register
from tests.utils.waiting import eventually

GMAIL = "https://www.googleapis.com/auth/gmail."


@pytest.fixture(scope="module")
async def gmail(emulators: Stack) -> AsyncIterator[SmtpEmulator]:
    """Gmail's SMTP emulator, with the Gmail API next to it."""
    async with smtp_emulator(emulators, "gmail") as running:
        yield running


@pytest.fixture
def user() -> str:
    return f"api-{uuid.uuid4().hex[:8]}@gmail-tenant.example"


async def user_token(emulators: Stack, http: httpx.AsyncClient, user: str, scope: str) -> str:
    client_id, secret = await register(emulators, http)
    tokens = await authorize(emulators, http, client_id, secret, user, secrets.token_urlsafe(40), scope)
    return str(tokens["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def message(sender: str, **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "to@fabrikam.example", f"api {uuid.uuid4().hex}"
    m["Message-ID"] = f"<{uuid.uuid4().hex}@fleetmail.example>"
    for name, value in headers.items():
        m[name] = value
    m.set_content("hello")
    return m


def raw_of(m: EmailMessage) -> str:
    return base64.urlsafe_b64encode(m.as_bytes()).decode()


async def delivered(http: httpx.AsyncClient, gmail: SmtpEmulator, message_id: str) -> dict:
    async def listed() -> list[dict]:
        return (
            await http.get(f"{gmail.control_url}/_emulator/messages", params={"message_id": message_id})
        ).json()

    [entry] = await eventually(listed, what=f"{message_id} to be delivered")
    return entry


async def raw_delivered(http: httpx.AsyncClient, gmail: SmtpEmulator, entry: dict) -> bytes:
    return (await http.get(f"{gmail.control_url}/_emulator/messages/{entry['id']}/raw")).content


def google_error(answer: httpx.Response, code: int, reason: str) -> dict:
    assert answer.status_code == code, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and error["status"]
    assert error["errors"][0]["reason"] == reason and error["errors"][0]["domain"]
    return error


async def test_send_raw_is_delivered_and_found_again_by_rfc822msgid(
    emulators, emulator_http, gmail, user
) -> None:
    sender = await user_token(emulators, emulator_http, user, GMAIL + "send")
    sent_message = message(user, Bcc="hidden@fabrikam.example")
    url = f"{gmail.api_url}/gmail/v1/users/me/messages"
    answer = await emulator_http.post(
        f"{url}/send", json={"raw": raw_of(sent_message)}, headers=bearer(sender)
    )
    assert answer.status_code == 200, answer.text
    sent = answer.json()
    assert sent["labelIds"] == ["SENT"] and sent["threadId"] == sent["id"]
    entry = await delivered(emulator_http, gmail, sent_message["Message-ID"])
    assert entry["auth_mechanism"] == "GMAIL_API" and entry["auth_user"] == user
    assert sorted(entry["rcpt_tos"]) == ["hidden@fabrikam.example", "to@fabrikam.example"]
    raw = await raw_delivered(emulator_http, gmail, entry)
    assert message_from_bytes(raw)["Bcc"] is None
    query = {"q": f"rfc822msgid:{sent_message['Message-ID']}"}
    google_error(
        await emulator_http.get(url, params=query, headers=bearer(sender)), 403, "insufficientPermissions"
    )
    reader = await user_token(emulators, emulator_http, user, GMAIL + "readonly")
    found = (await emulator_http.get(url, params=query, headers=bearer(reader))).json()
    assert found["messages"] == [{"id": sent["id"], "threadId": sent["id"]}]
    again = await emulator_http.get(f"{url}/{sent['id']}", params={"format": "raw"}, headers=bearer(reader))
    assert base64.urlsafe_b64decode(again.json()["raw"]) == raw
    nothing = await emulator_http.get(url, params={"q": "rfc822msgid:<none@x>"}, headers=bearer(reader))
    assert nothing.json() == {"resultSizeEstimate": 0}
    no_raw = await emulator_http.post(f"{url}/send", json={}, headers=bearer(sender))
    assert "'raw' RFC822 payload" in google_error(no_raw, 400, "invalidArgument")["message"]


async def test_a_missing_scope_a_bad_token_and_another_user_are_refused(
    emulators, emulator_http, gmail, user
) -> None:
    url = f"{gmail.api_url}/gmail/v1/users/me/messages/send"
    body = {"raw": raw_of(message(user))}
    sign_in_only = await user_token(emulators, emulator_http, user, "profile")
    error = google_error(
        await emulator_http.post(url, json=body, headers=bearer(sign_in_only)), 403, "insufficientPermissions"
    )
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    bad = await emulator_http.post(url, json=body, headers=bearer("ya29.not-a-token"))
    assert google_error(bad, 401, "authError")["status"] == "UNAUTHENTICATED"
    token = await user_token(emulators, emulator_http, user, GMAIL + "send")
    other = await emulator_http.post(
        url.replace("/users/me/", "/users/someone-else@gmail-tenant.example/"),
        json=body,
        headers=bearer(token),
    )
    assert google_error(other, 403, "forbidden")["message"] == f"Delegation denied for {user}"


async def test_media_and_multipart_uploads_and_the_from_rewriting(
    emulators, emulator_http, gmail, user
) -> None:
    token = await user_token(emulators, emulator_http, user, GMAIL + "send")
    url = f"{gmail.api_url}/upload/gmail/v1/users/me/messages/send"
    as_ceo = message("Head Office <ceo@contoso.example>")
    media = await emulator_http.post(
        url,
        params={"uploadType": "media"},
        content=as_ceo.as_bytes(),
        headers={**bearer(token), "Content-Type": "message/rfc822"},
    )
    assert media.status_code == 200, media.text
    seen = message_from_bytes(
        await raw_delivered(emulator_http, gmail, await delivered(emulator_http, gmail, as_ceo["Message-ID"]))
    )
    assert seen["From"] == f"Head Office <{user}>"
    assert seen["X-Google-Original-From"] == "Head Office <ceo@contoso.example>"
    plain = message(user)
    boundary = "fleetmail-boundary"
    related = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{{}}\r\n--{boundary}\r\n"
            "Content-Type: message/rfc822\r\n\r\n"
        ).encode()
        + plain.as_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    multipart = await emulator_http.post(
        url,
        params={"uploadType": "multipart"},
        content=related,
        headers={**bearer(token), "Content-Type": f'multipart/related; boundary="{boundary}"'},
    )
    assert multipart.status_code == 200, multipart.text
    await delivered(emulator_http, gmail, plain["Message-ID"])
    untyped = await emulator_http.post(url, content=plain.as_bytes(), headers=bearer(token))
    google_error(untyped, 400, "invalidArgument")


def large_message(sender: str, scan: bytes) -> tuple[str, bytes]:
    """(Message-ID, bytes) of a message with `scan` attached, put together without the email
    package (which takes seconds over 35 MB)."""
    message_id, boundary = f"<{uuid.uuid4().hex}@fleetmail.example>", uuid.uuid4().hex
    head = (
        f"From: {sender}\r\nTo: to@fabrikam.example\r\nSubject: a large scan\r\nMessage-ID: {message_id}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}\r\n"
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n'
    )
    body = base64.encodebytes(scan).replace(b"\n", b"\r\n")
    return message_id, head.encode() + body + f"--{boundary}--\r\n".encode()


@pytest.mark.timeout(180)
async def test_a_25_mb_scan_through_a_resumable_upload_arrives_intact(
    emulators, emulator_http, gmail, user
) -> None:
    token = await user_token(emulators, emulator_http, user, GMAIL + "send")
    url = f"{gmail.api_url}/upload/gmail/v1/users/me/messages/send"

    async def start(length: int) -> httpx.Response:
        return await emulator_http.post(
            url,
            params={"uploadType": "resumable"},
            json={},
            headers={
                **bearer(token),
                "X-Upload-Content-Type": "message/rfc822",
                "X-Upload-Content-Length": str(length),
            },
        )

    google_error(await start(35 * 1024 * 1024 + 1), 413, "uploadTooLarge")
    scan = os.urandom(25 * 1024 * 1024)
    message_id, raw = large_message(user, scan)
    started = await start(len(raw))
    assert started.status_code == 200
    session = started.headers["location"]

    async def put(first: int, chunk: bytes) -> httpx.Response:
        content_range = f"bytes {first}-{first + len(chunk) - 1}/{len(raw)}"
        return await emulator_http.put(
            session, content=chunk, headers={"Content-Range": content_range}, timeout=120
        )

    google_error(await put(0, raw[:1000]), 400, "badRequest")
    chunk = 8 * 1024 * 1024
    # A chunk that is not a multiple of 256 KiB: the server keeps what is, and says so.
    partial = await put(0, raw[: chunk + 100])
    assert partial.status_code == 308 and partial.headers["range"] == f"bytes=0-{chunk - 1}"
    asked = await emulator_http.put(session, headers={"Content-Range": f"bytes */{len(raw)}"})
    assert asked.status_code == 308 and asked.headers["range"] == f"bytes=0-{chunk - 1}"
    for first in range(chunk, len(raw), chunk):
        answer = await put(first, raw[first : first + chunk])
        if first + chunk < len(raw):
            assert answer.status_code == 308, answer.text
    assert answer.status_code == 200 and answer.json()["labelIds"] == ["SENT"]
    [attachment] = (await delivered(emulator_http, gmail, message_id))["attachments"]
    assert attachment["size"] == len(scan) and attachment["sha256"] == hashlib.sha256(scan).hexdigest()


async def test_the_daily_limit_is_the_one_gmail_smtp_counts(emulators, emulator_http, gmail, user) -> None:
    await emulator_http.post(
        f"{gmail.control_url}/_emulator/mailboxes", json={"address": user, "limits": {"daily": 2}}
    )
    token = await user_token(emulators, emulator_http, user, MAIL)
    context = ssl.create_default_context(cafile=str(emulators.ca_file))
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=gmail.port, start_tls=True, tls_context=context
    ) as smtp:
        await smtp.auth_xoauth2(user, token)
        await smtp.send_message(message(user))
    url = f"{gmail.api_url}/gmail/v1/users/me/messages/send"
    first = await emulator_http.post(url, json={"raw": raw_of(message(user))}, headers=bearer(token))
    assert first.status_code == 200
    over = await emulator_http.post(url, json={"raw": raw_of(message(user))}, headers=bearer(token))
    error = google_error(over, 429, "rateLimitExceeded")
    assert error["message"].startswith("User-rate limit exceeded.") and "(Mail sending)" in error["message"]
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=gmail.port, start_tls=True, tls_context=context
    ) as smtp:
        await smtp.auth_xoauth2(user, token)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.send_message(message(user))
    assert refused.value.code == 550 and "5.4.5" in refused.value.message
    await emulator_http.post(f"{gmail.control_url}/_emulator/clock", json={"advance_s": 86_400})
    assert (
        await emulator_http.post(url, json={"raw": raw_of(message(user))}, headers=bearer(token))
    ).status_code == 200


async def test_the_per_user_rate_in_quota_units(emulators, emulator_http, gmail, user) -> None:
    """A send costs 100 units: a budget of 250 lets two through in its window."""
    await emulator_http.post(
        f"{gmail.control_url}/_emulator/mailboxes", json={"address": user, "limits": {"api_quota": 250}}
    )
    token = await user_token(emulators, emulator_http, user, GMAIL + "send")
    url = f"{gmail.api_url}/gmail/v1/users/me/messages/send"
    for _ in range(2):
        assert (
            await emulator_http.post(url, json={"raw": raw_of(message(user))}, headers=bearer(token))
        ).status_code == 200
    third = await emulator_http.post(url, json={"raw": raw_of(message(user))}, headers=bearer(token))
    google_error(third, 429, "rateLimitExceeded")
    assert 1 <= int(third.headers["retry-after"]) <= 60
    await emulator_http.post(f"{gmail.control_url}/_emulator/clock", json={"advance_s": 60})
    assert (
        await emulator_http.post(url, json={"raw": raw_of(message(user))}, headers=bearer(token))
    ).status_code == 200


async def test_domain_wide_delegation_needs_the_workspace_admins_authorization(
    emulators, emulator_http, gmail
) -> None:
    domain = f"ws-{uuid.uuid4().hex[:6]}.example"
    user = f"scanner@{domain}"
    key = (
        await emulator_http.post(
            f"{emulators.google_url}/_emulator/service-accounts",
            json={
                "client_email": f"sa-{uuid.uuid4().hex[:6]}@fleet.iam.gserviceaccount.com",
                "domain": domain,
            },
        )
    ).json()

    async def token_for(subject: str | None) -> httpx.Response:
        issued = int(time.time())
        claims = {
            "iss": key["client_email"],
            "scope": GMAIL + "send",
            "aud": "https://oauth2.googleapis.com/token",
            "iat": issued,
            "exp": issued + 3600,
            **({"sub": subject} if subject else {}),
        }
        assertion = jwt.encode(
            claims, key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]}
        )
        return await emulator_http.post(
            f"{emulators.google_url}/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )

    refused = await token_for(user)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized_client"
    await emulator_http.post(
        f"{emulators.google_url}/_emulator/service-accounts/delegation",
        json={"client_email": key["client_email"], "delegated_scopes": [GMAIL + "send"]},
    )
    delegated = (await token_for(user)).json()["access_token"]
    sent_message = message(user)
    url = f"{gmail.api_url}/gmail/v1/users/{user}/messages/send"
    answer = await emulator_http.post(url, json={"raw": raw_of(sent_message)}, headers=bearer(delegated))
    assert answer.status_code == 200, answer.text
    assert (await delivered(emulator_http, gmail, sent_message["Message-ID"]))["auth_user"] == user
    own = (await token_for(None)).json()["access_token"]
    itself = await emulator_http.post(
        f"{gmail.api_url}/gmail/v1/users/me/messages/send",
        json={"raw": raw_of(message(key["client_email"]))},
        headers=bearer(own),
    )
    assert google_error(itself, 400, "failedPrecondition")["message"] == "Precondition check failed."
