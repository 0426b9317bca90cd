"""One scan-to-email job travels the whole path on the stack `make run` starts.

A device submits a PDF over HTTP; job-gateway stores it in the Object Store and queues the
job; mail-service gets the administrator's token from token-service (acquired by device
code through MSAL from the Microsoft emulator) and sends with XOAUTH2 over STARTTLS to the
SMTP emulator, which checks the token against the emulator's keys.
"""

import email
import email.policy
import hashlib
import json
import re

import httpx
from bson import json_util
from fleetmail_devkit.fleet import ADMINISTRATOR, SampleFleet, sample_pdf
from fleetmail_devkit.probes import events
from pymongo import AsyncMongoClient


async def test_scan_to_email_is_delivered_with_xoauth2_and_no_token_is_stored_in_clear(
    stack, emulator_http: httpx.AsyncClient
) -> None:
    lines: list[str] = []
    fleet = SampleFleet(stack, lines.append)
    try:
        delivered, total = await fleet.run(devices=2, jobs_per_device=2, timeout_s=60)
    finally:
        await fleet.close()
    assert (delivered, total) == (4, 4), "\n".join(lines)
    assert any("enter the code" in line for line in lines)

    issued = (await emulator_http.get(f"{stack.microsoft_url}/_emulator/issued")).json()
    issued_digests = {hashlib.sha256(t.encode()).hexdigest() for t in issued["access_tokens"]}
    messages = (await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages")).json()
    # The sample fleet's scans only ("Scan <n> from mfp-<nn>"), whatever other tests sent before.
    scans = [m for m in messages if re.match(r"^Scan \d+ from mfp-\d+$", m["subject"] or "")]
    assert len(scans) == 4
    for accepted in scans:
        assert accepted["auth_mechanism"] == "XOAUTH2"
        assert accepted["auth_user"] == ADMINISTRATOR
        assert accepted["token_sha256"] in issued_digests, "token not issued by the Microsoft emulator"
        assert accepted["port"] == stack.ports.smtp_starttls
        raw = (
            await emulator_http.get(f"{stack.smtp_control_url}/_emulator/messages/{accepted['id']}/raw")
        ).content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["From"] == ADMINISTRATOR
        assert parsed["Message-ID"].endswith("@fleetmail>")
        pdf = next(parsed.iter_attachments())
        assert pdf.get_content_type() == "application/pdf"
        assert pdf.get_content() == sample_pdf(accepted["subject"])

    # Nothing the providers issued may be stored in clear, anywhere in MongoDB.
    secrets = issued["refresh_tokens"] + issued["access_tokens"]
    assert secrets
    mongo: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
    try:
        grant = await mongo["fleetmail_tokens"]["grants"].find_one({"_id": "contoso:administrator"})
        assert grant is not None and set(grant["refresh_token"]) == {"key_id", "nonce", "ciphertext"}
        for database in await mongo.list_database_names():
            for collection in await mongo[database].list_collection_names():
                async for document in mongo[database][collection].find({}):
                    dumped = json_util.dumps(document)
                    for secret in secrets:
                        assert secret not in dumped, f"a token is stored in clear in {database}.{collection}"
    finally:
        await mongo.close()

    # Nor in any event on the bus.
    for event in await events(stack, "fleetmail.events.>"):
        dumped = json.dumps(event)
        for secret in secrets:
            assert secret not in dumped, f"a token is in a {event.get('kind')} event"

    # Nor in any log line of any part of the stack.
    for part in stack.parts:
        for line in part.output:
            for secret in secrets:
                assert secret not in line, f"{part.name} logged a token"


async def test_job_status_is_per_tenant_and_needs_device_credentials(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        anonymous = await http.get("/v1/jobs/anything")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        wrong = await http.get("/v1/jobs/anything", auth=("mfp-01", "not-the-secret"))
        assert wrong.status_code == 401
