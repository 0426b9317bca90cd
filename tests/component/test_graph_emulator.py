"""The Graph emulator answers as Microsoft Graph's mail API does: what it delivers is read at
the SMTP emulator's control API, as an SMTP delivery is."""

import asyncio
import base64
import hashlib
import os
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage

import httpx
import pytest
from fleetmail_devkit.stack import Stack

from tests.utils.mail_apis import graph_token
from tests.utils.waiting import eventually

GRAPH = "https://graph.microsoft.com"


@pytest.fixture
def mailbox() -> str:
    return f"graph-{uuid.uuid4().hex[:8]}@contoso.example"


async def app_token(emulators: Stack, http: httpx.AsyncClient, roles: list[str]) -> tuple[str, str]:
    """(client id, token) of a daemon app an administrator of contoso consented `roles` to."""
    client_id, secret = f"daemon-{uuid.uuid4().hex[:8]}", "daemon-secret"
    await http.post(
        f"{emulators.microsoft_url}/_emulator/apps", json={"client_id": client_id, "client_secret": secret}
    )
    if roles:
        await http.post(
            f"{emulators.microsoft_url}/_emulator/admin-consent",
            json={"client_id": client_id, "directory": "contoso", "roles": roles},
        )
    answer = await http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": f"{GRAPH}/.default",
        },
    )
    return client_id, str(answer.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def json_message(sender: str | None = None, **extra: object) -> dict:
    message: dict = {
        "subject": f"graph {uuid.uuid4().hex}",
        "body": {"contentType": "Text", "content": "hello"},
        "toRecipients": [{"emailAddress": {"address": "to@fabrikam.example"}}],
        **extra,
    }
    if sender is not None:
        message["from"] = {"emailAddress": {"address": sender}}
    return message


async def delivered(emulators: Stack, http: httpx.AsyncClient, message_id: str) -> dict:
    """The SMTP emulator's record of the delivery (its attachments decoded, with sha256)."""

    async def listed() -> list[dict]:
        url = f"{emulators.smtp_control_url}/_emulator/messages"
        return (await http.get(url, params={"message_id": message_id})).json()

    [entry] = await eventually(listed, what=f"{message_id} to be delivered")
    return entry


async def received(emulators: Stack, http: httpx.AsyncClient, entry: dict) -> EmailMessage:
    """The delivered message as its recipients see it."""
    raw = (await http.get(f"{emulators.smtp_control_url}/_emulator/messages/{entry['id']}/raw")).content
    return message_from_bytes(raw, policy=policy.default)


async def sent_items(emulators: Stack, http: httpx.AsyncClient, token: str, message_id: str) -> list[dict]:
    answer = await http.get(
        f"{emulators.graph_url}/v1.0/me/mailFolders/SentItems/messages",
        params={"$filter": f"internetMessageId eq '{message_id}'"},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["value"]


def graph_error(answer: httpx.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"]
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    return error


async def test_send_mail_json_is_delivered_as_the_recipient_sees_it_and_kept_in_sent_items(
    emulators, emulator_http, mailbox
) -> None:
    token = await graph_token(emulators, emulator_http, mailbox, "Mail.Send Mail.Read")
    message_id = f"<{uuid.uuid4().hex}@fleetmail.example>"
    scan = os.urandom(2000)
    message = json_message(
        internetMessageId=message_id,
        bccRecipients=[{"emailAddress": {"address": "hidden@fabrikam.example"}}],
        attachments=[
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "scan.pdf",
                "contentType": "application/pdf",
                "contentBytes": base64.b64encode(scan).decode(),
            }
        ],
    )
    answer = await emulator_http.post(
        f"{emulators.graph_url}/v1.0/me/sendMail", json={"message": message}, headers=bearer(token)
    )
    assert answer.status_code == 202 and answer.content == b""
    entry = await delivered(emulators, emulator_http, message_id)
    assert entry["auth_mechanism"] == "GRAPH" and entry["auth_user"] == mailbox
    assert sorted(entry["rcpt_tos"]) == ["hidden@fabrikam.example", "to@fabrikam.example"]
    seen = await received(emulators, emulator_http, entry)
    assert seen["Bcc"] is None and seen["From"] == mailbox
    [attachment] = entry["attachments"]
    assert attachment["name"] == "scan.pdf" and attachment["sha256"] == hashlib.sha256(scan).hexdigest()
    [kept] = await sent_items(emulators, emulator_http, token, message_id)
    assert kept["internetMessageId"] == message_id
    unsaved_id = f"<{uuid.uuid4().hex}@fleetmail.example>"
    answer = await emulator_http.post(
        f"{emulators.graph_url}/v1.0/users/{mailbox}/sendMail",
        json={"message": json_message(internetMessageId=unsaved_id), "saveToSentItems": False},
        headers=bearer(token),
    )
    assert answer.status_code == 202
    await delivered(emulators, emulator_http, unsaved_id)
    assert await sent_items(emulators, emulator_http, token, unsaved_id) == []


async def test_send_mail_in_mime_form_and_its_limits(emulators, emulator_http, mailbox) -> None:
    """Base64 MIME as text/plain; bad base64 and a body over 4 MB get Graph's errors."""
    token = await graph_token(emulators, emulator_http, mailbox, "Mail.Send")
    mime = EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = mailbox, "to@fabrikam.example", "mime"
    mime["Message-ID"] = message_id = f"<{uuid.uuid4().hex}@fleetmail.example>"
    mime.set_content("hello")
    url = f"{emulators.graph_url}/v1.0/me/sendMail"
    headers = {**bearer(token), "Content-Type": "text/plain"}
    answer = await emulator_http.post(url, content=base64.b64encode(mime.as_bytes()), headers=headers)
    assert answer.status_code == 202
    entry = await delivered(emulators, emulator_http, message_id)
    assert (await received(emulators, emulator_http, entry))["Subject"] == "mime"
    assert entry["auth_mechanism"] == "GRAPH"
    bad = await emulator_http.post(url, content=b"not base64 at all!", headers=headers)
    graph_error(bad, 400, "ErrorMimeContentInvalidBase64String")
    big = await emulator_http.post(url, content=b"A" * (4 * 1024 * 1024 + 4), headers=headers)
    graph_error(big, 413, "RequestEntityTooLarge")


@pytest.mark.timeout(180)
async def test_a_25_mb_attachment_through_an_upload_session_arrives_intact(
    emulators, emulator_http, mailbox
) -> None:
    token = await graph_token(emulators, emulator_http, mailbox, "Mail.Send Mail.ReadWrite")
    base = f"{emulators.graph_url}/v1.0/me/messages"
    message_id = f"<{uuid.uuid4().hex}@fleetmail.example>"
    draft = await emulator_http.post(
        base, json=json_message(internetMessageId=message_id), headers=bearer(token)
    )
    assert draft.status_code == 201 and draft.json()["isDraft"] is True
    draft_id = draft.json()["id"]
    too_small = await emulator_http.post(
        f"{base}/{draft_id}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": "s.pdf", "size": 1024}},
        headers=bearer(token),
    )
    graph_error(too_small, 400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    scan = os.urandom(25 * 1024 * 1024)
    session = await emulator_http.post(
        f"{base}/{draft_id}/attachments/createUploadSession",
        json={
            "AttachmentItem": {
                "attachmentType": "file",
                "name": "scan.pdf",
                "size": len(scan),
                "contentType": "application/pdf",
            }
        },
        headers=bearer(token),
    )
    assert session.status_code == 201 and session.json()["nextExpectedRanges"] == ["0-"]
    upload_url = session.json()["uploadUrl"]

    async def put(first: int, chunk: bytes, **headers: str) -> httpx.Response:
        last = first + len(chunk) - 1
        content_range = f"bytes {first}-{last}/{len(scan)}"
        return await emulator_http.put(
            upload_url, content=chunk, headers={"Content-Range": content_range, **headers}
        )

    chunk = 4 * 1024 * 1024
    graph_error(await put(0, scan[: chunk + 1]), 413, "RequestEntityTooLarge")
    graph_error(await put(0, scan[:chunk], **bearer(token)), 401, "InvalidAuthenticationToken")
    graph_error(await put(chunk, scan[chunk : 2 * chunk]), 400, "ErrorInvalidRequest")
    for first in range(0, len(scan), chunk):
        answer = await put(first, scan[first : first + chunk])
        if first + chunk < len(scan):
            assert answer.status_code == 200 and answer.json()["NextExpectedRanges"] == [str(first + chunk)]
    assert answer.status_code == 201 and "Attachments(" in answer.headers["location"]
    # Composing and parsing a 35 MB message takes the emulator seconds on a busy machine.
    sent = await emulator_http.post(f"{base}/{draft_id}/send", headers=bearer(token), timeout=120)
    assert sent.status_code == 202
    entry = await delivered(emulators, emulator_http, message_id)
    [attachment] = entry["attachments"]
    assert attachment["size"] == len(scan) and attachment["sha256"] == hashlib.sha256(scan).hexdigest()


async def test_a_token_for_another_audience_or_none_is_refused(emulators, emulator_http, mailbox) -> None:
    """Exchange's SMTP token is not Graph's (and a Graph token is not Exchange's: the SMTP
    emulator's own tests refuse it with 5.7.3)."""
    smtp_token = await graph_token(emulators, emulator_http, mailbox, "https://outlook.office.com/SMTP.Send")
    url = f"{emulators.graph_url}/v1.0/me/sendMail"
    refused = await emulator_http.post(url, json={"message": json_message()}, headers=bearer(smtp_token))
    error = graph_error(refused, 401, "InvalidAuthenticationToken")
    assert error["message"] == "Access token validation failure. Invalid audience."
    anonymous = await emulator_http.post(url, json={"message": json_message()})
    assert graph_error(anonymous, 401, "InvalidAuthenticationToken")["message"] == "Access token is empty."


async def test_a_missing_permission_is_403_with_the_documented_body(
    emulators, emulator_http, mailbox
) -> None:
    read_only = await graph_token(emulators, emulator_http, mailbox, "Mail.Read")
    client_request_id = str(uuid.uuid4())
    answer = await emulator_http.post(
        f"{emulators.graph_url}/v1.0/me/sendMail",
        json={"message": json_message()},
        headers={**bearer(read_only), "client-request-id": client_request_id},
    )
    error = graph_error(answer, 403, "ErrorAccessDenied")
    assert error["message"] == "Access is denied. Check credentials and try again."
    assert error["innerError"]["client-request-id"] == client_request_id
    send_only = await graph_token(emulators, emulator_http, mailbox, "Mail.Send")
    draft = await emulator_http.post(
        f"{emulators.graph_url}/v1.0/me/messages", json=json_message(), headers=bearer(send_only)
    )
    graph_error(draft, 403, "ErrorAccessDenied")
    other = await emulator_http.post(
        f"{emulators.graph_url}/v1.0/users/ceo@contoso.example/sendMail",
        json={"message": json_message()},
        headers=bearer(send_only),
    )
    graph_error(other, 403, "ErrorAccessDenied")


async def test_app_only_needs_the_consented_role_and_the_access_policy(
    emulators, emulator_http, mailbox
) -> None:
    _, unconsented = await app_token(emulators, emulator_http, [])
    url = f"{emulators.graph_url}/v1.0/users/{mailbox}/sendMail"
    graph_error(
        await emulator_http.post(url, json={"message": json_message()}, headers=bearer(unconsented)),
        403,
        "ErrorAccessDenied",
    )
    client_id, token = await app_token(emulators, emulator_http, ["Mail.Send"])
    assert (
        await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    ).status_code == 202
    me = await emulator_http.post(
        f"{emulators.graph_url}/v1.0/me/sendMail", json={"message": json_message()}, headers=bearer(token)
    )
    assert "only valid with delegated authentication" in graph_error(me, 400, "BadRequest")["message"]
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/api/app-access-policy",
        json={"app_id": client_id, "mailboxes": ["scanners@contoso.example"]},
    )
    limited = await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    assert graph_error(limited, 403, "ErrorAccessDenied")["message"].startswith("Access to OData is disabled")
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/api/app-access-policy",
        json={"app_id": client_id, "mailboxes": [mailbox]},
    )
    assert (
        await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    ).status_code == 202


async def test_send_as_and_a_mailbox_not_enabled_for_rest(emulators, emulator_http, mailbox) -> None:
    token = await graph_token(emulators, emulator_http, mailbox, "Mail.Send")
    url = f"{emulators.graph_url}/v1.0/me/sendMail"
    as_ceo = {"message": json_message(sender="ceo@contoso.example")}
    graph_error(await emulator_http.post(url, json=as_ceo, headers=bearer(token)), 403, "ErrorSendAsDenied")
    mailboxes = f"{emulators.smtp_control_url}/_emulator/mailboxes"
    await emulator_http.post(mailboxes, json={"address": mailbox, "send_as": ["ceo@contoso.example"]})
    assert (await emulator_http.post(url, json=as_ceo, headers=bearer(token))).status_code == 202
    await emulator_http.post(mailboxes, json={"address": mailbox, "rest_enabled": False})
    refused = await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    graph_error(refused, 404, "MailboxNotEnabledForRESTAPI")


async def test_the_fifth_concurrent_request_gets_429_with_retry_after(
    emulators, emulator_http, mailbox
) -> None:
    client_id, token = await app_token(emulators, emulator_http, ["Mail.Send"])
    control = f"{emulators.smtp_control_url}/_emulator/api"
    url = f"{emulators.graph_url}/v1.0/users/{mailbox}/sendMail"
    await emulator_http.post(f"{control}/hold", json={"mailbox": mailbox, "hold": True})
    in_flight = [
        asyncio.create_task(emulator_http.post(url, json={"message": json_message()}, headers=bearer(token)))
        for _ in range(4)
    ]

    async def four_in_flight() -> bool:
        usage = (
            await emulator_http.get(f"{control}/usage", params={"mailbox": mailbox, "app": client_id})
        ).json()
        return usage["in_flight"] == 4

    await eventually(four_in_flight, what="four requests in flight")
    fifth = await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    error = graph_error(fifth, 429, "ApplicationThrottled")
    assert "MailboxConcurrency" in error["message"] and int(fifth.headers["retry-after"]) >= 1
    await emulator_http.post(f"{control}/hold", json={"mailbox": mailbox, "hold": False})
    assert [r.status_code for r in await asyncio.gather(*in_flight)] == [202] * 4
    [met] = (await emulator_http.get(f"{control}/throttled", params={"mailbox": mailbox})).json()
    assert met["limit"] == "concurrency" and met["app"] == client_id.lower() and met["retry_after_s"] >= 1


async def test_the_request_budget_per_window_then_retry_after(emulators, emulator_http, mailbox) -> None:
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/mailboxes",
        json={"address": mailbox, "limits": {"api_quota": 2}},
    )
    _, token = await app_token(emulators, emulator_http, ["Mail.Send"])
    url = f"{emulators.graph_url}/v1.0/users/{mailbox}/sendMail"
    for _ in range(2):
        assert (
            await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
        ).status_code == 202
    third = await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    graph_error(third, 429, "TooManyRequests")
    assert 1 <= int(third.headers["retry-after"]) <= 600
    [met] = (
        await emulator_http.get(
            f"{emulators.smtp_control_url}/_emulator/api/throttled", params={"mailbox": mailbox}
        )
    ).json()
    assert met["limit"] == "quota" and met["retry_after_s"] == int(third.headers["retry-after"])
    await emulator_http.post(f"{emulators.smtp_control_url}/_emulator/clock", json={"advance_s": 600})
    assert (
        await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    ).status_code == 202


async def test_the_upload_budget_counts_request_bodies(emulators, emulator_http, mailbox) -> None:
    """150 MB in 5 minutes per app and mailbox; shrunk here to a few kilobytes."""
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/mailboxes",
        json={"address": mailbox, "limits": {"api_upload_bytes": 3000}},
    )
    _, token = await app_token(emulators, emulator_http, ["Mail.Send"])
    url = f"{emulators.graph_url}/v1.0/users/{mailbox}/sendMail"
    padded = {"message": json_message(), "padding": "x" * 1000}
    for _ in range(2):
        assert (await emulator_http.post(url, json=padded, headers=bearer(token))).status_code == 202
    over = await emulator_http.post(url, json=padded, headers=bearer(token))
    graph_error(over, 429, "TooManyRequests")
    assert 1 <= int(over.headers["retry-after"]) <= 300


async def test_an_injected_outage_answers_in_graphs_shape(emulators, emulator_http, mailbox) -> None:
    """5xx and 429 on demand, for one mailbox only, as fleetmail's retries will meet them."""
    await emulator_http.post(
        f"{emulators.smtp_control_url}/_emulator/faults",
        json={"stage": "api", "code": 503, "text": "Service Unavailable", "user": mailbox},
    )
    token = await graph_token(emulators, emulator_http, mailbox, "Mail.Send")
    url = f"{emulators.graph_url}/v1.0/me/sendMail"
    outage = await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    graph_error(outage, 503, "ServiceUnavailable")
    assert outage.headers["retry-after"] == "1"
    assert (
        await emulator_http.post(url, json={"message": json_message()}, headers=bearer(token))
    ).status_code == 202
