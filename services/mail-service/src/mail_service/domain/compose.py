"""Composing the MIME message of a job: subjects and bodies per function, safe headers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from fleetmail_contracts.jobs import JobBase, JobFunction

from ..errors import InvalidJob

_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_UNSAFE = re.compile(r"[\r\n\x00]")

DEFAULT_SUBJECTS: dict[JobFunction, str] = {
    JobFunction.SCAN_TO_EMAIL: "Scanned document",
    JobFunction.SCAN_TO_ME: "Your scanned document",
    JobFunction.SCAN_TO_URL: "Link to your scanned document",
    JobFunction.INTERNET_FAX_TX: "Internet fax",
    JobFunction.USER_BOX_EMAIL: "Document from a user box",
    JobFunction.APPLICATION_EMAIL: "Message from a device application",
    JobFunction.EMAIL_NOTIFICATION: "Device notification",
    JobFunction.TOTAL_COUNTER_NOTIFICATION: "Total counter notification",
    JobFunction.FORWARD_TX: "Forwarded fax",
    JobFunction.TSI_ROUTING: "Routed fax",
    JobFunction.STATUS_NOTIFICATION: "Device status notification",
    JobFunction.TX_RESULT_REPORT: "Transmission result report",
}


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def check_address(address: str) -> str:
    if _UNSAFE.search(address) or not _ADDRESS.match(address):
        raise InvalidJob(f"not a valid e-mail address: {address!r}")
    return address


def check_header(name: str, value: str) -> str:
    if _UNSAFE.search(value):
        raise InvalidJob(f"the {name} contains a line break or NUL, which is not allowed")
    return value


def message_id(job_id: str) -> str:
    """Derived from the job id, so a resend of the same job carries the same Message-ID."""
    return f"<{job_id}@fleetmail>"


def compose(
    job: JobBase,
    function: JobFunction,
    sender: str,
    attachments: list[Attachment],
    now: datetime,
) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients (Bcc only in the envelope, never a header)."""
    to = [check_address(a) for a in job.to]
    cc = [check_address(a) for a in job.cc]
    bcc = [check_address(a) for a in job.bcc]
    if function is JobFunction.SCAN_TO_ME:
        if job.login_user is None:
            raise InvalidJob("Scan to Me needs the login user's address")
        to = [check_address(job.login_user)]
    if not (to or cc or bcc):
        raise InvalidJob("the job has no recipients")
    message = EmailMessage(policy=SMTP)
    message["From"] = check_address(sender)
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = check_header("subject", job.subject or DEFAULT_SUBJECTS[function])
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(job.job_id)
    message["X-Fleetmail-Function"] = function.value
    body = job.body or f"{DEFAULT_SUBJECTS[function]} from device {job.device_id}."
    if function is JobFunction.SCAN_TO_URL:
        url = getattr(job, "document_url", None)
        if url is None:
            raise InvalidJob("Scan to URL needs the document's URL")
        body = f"{body}\n\nThe document is available at:\n{check_header('document URL', url)}\n"
        attachments = []
    message.set_content(body)
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=check_header("attachment name", attachment.filename),
        )
    return message, to + cc + bcc


def retry_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Exponential backoff; `jitter` in [0, 1) spreads retries of many jobs apart."""
    delay: float = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return delay * (0.5 + jitter / 2)
