import base64
import io
import json
import logging

from fleetmail_runtime.logging import JsonFormatter, RedactionFilter
from fleetmail_runtime.redaction import REDACTED, redact

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJ1cG4iOiJhQGIuYyJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


def test_secrets_of_every_shape_are_removed() -> None:
    xoauth2 = base64.b64encode(f"user=a@b.c\x01auth=Bearer {JWT}\x01\x01".encode()).decode()
    samples = {
        f"Authorization: Bearer {JWT}": JWT,
        "authorization=Basic dXNlcjpwYXNz": "dXNlcjpwYXNz",
        f"AUTH XOAUTH2 {xoauth2}": xoauth2,
        "user=a@b.c\x01auth=Bearer abc.def.ghi\x01\x01": "abc.def.ghi",
        '{"refresh_token": "1.AQ-secret-value"}': "1.AQ-secret-value",
        "client_secret=s3cr3t&x=1": "s3cr3t",
        "token ya29.a0AfH6SMBxyzxyzxyzxyz": "ya29.a0AfH6SMBxyzxyzxyzxyz",
        f"plain jwt {JWT} in text": JWT,
        "nats://mail-service:n4ts-pass@nats-0:4222": "n4ts-pass",
        "mongodb://fleet:m0ngo-pass@mongo-0:27017/?replicaSet=rs0": "m0ngo-pass",
    }
    for text, secret in samples.items():
        cleaned = redact(text)
        assert secret not in cleaned, text
        assert REDACTED in cleaned


def test_log_records_are_redacted_before_formatting() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("redaction-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("refresh failed for %s with %s", "a@b.c", f"Bearer {JWT}")
        try:
            raise ValueError(f"provider said access_token={JWT}")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert JWT not in output
    first = json.loads(output.splitlines()[0])
    assert first["service"] == "test" and "a@b.c" in first["msg"]
