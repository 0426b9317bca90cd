"""Composing the MIME message of a job: subjects and bodies per function (with each function's
own content, `content.py`), safe headers."""

from __future__ import annotations

import html
import re
from datetime import datetime

from fleetmail_contracts.addresses import is_address
from fleetmail_contracts.jobs import JobBase, JobFunction
from fleetmail_contracts.mail_events import FailureReason

from ..errors import InvalidJob
from .content import content_of, html_tables, text_of, with_note
from .mime import AttachmentSource, MimeMessage, date_header, encode_header, new_boundary

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


HTML_FUNCTIONS = frozenset(JobFunction) - {
    JobFunction.SCAN_TO_EMAIL,
    JobFunction.SCAN_TO_ME,
    JobFunction.INTERNET_FAX_TX,
}
"""Functions whose mail is read as a page (a link to open, a report, facts in a table): they
get an HTML alternative. Plain scans and Internet Fax stay plain text around their attachment."""

FAX_FUNCTIONS = frozenset({JobFunction.FORWARD_TX, JobFunction.TSI_ROUTING})
"""A received fax forwarded by e-mail: the fax document is what the message is for."""


def html_of(title: str, text: str, url: str | None = None, tables: str = "") -> str:
    """The text as escaped HTML paragraphs, the function's tables (already escaped) and the
    document link as a real link."""
    paragraphs = "".join(
        f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>"
        for block in text.replace("\r\n", "\n").split("\n\n")
        if block.strip()
    )
    link = f'<p><a href="{html.escape(url, quote=True)}">Open the document</a></p>' if url else ""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{paragraphs}{tables}{link}</body></html>"
    )


def check_address(address: str) -> str:
    if not is_address(address):
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
    attachments: list[AttachmentSource],
    now: datetime,
) -> tuple[MimeMessage, list[str]]:
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
    if function in FAX_FUNCTIONS and not attachments:
        raise InvalidJob("a forwarded fax needs its document attached", FailureReason.ATTACHMENT_MISSING)
    content = content_of(job)
    headers: list[tuple[str, str]] = [("From", check_address(sender))]
    if to:
        headers.append(("To", ", ".join(to)))
    if cc:
        headers.append(("Cc", ", ".join(cc)))
    subject = check_header("subject", with_note(job.subject or DEFAULT_SUBJECTS[function], content))
    headers += [
        ("Subject", encode_header(subject)),
        ("Date", date_header(now)),
        ("Message-ID", message_id(job.job_id)),
        ("X-Fleetmail-Function", function.value),
    ]
    intro = job.body or f"{DEFAULT_SUBJECTS[function]} from device {job.device_id}."
    facts = text_of(content)
    body = f"{intro.rstrip()}\n\n{facts}\n" if facts else intro
    html_body: str | None = None
    if function is JobFunction.SCAN_TO_URL:
        url = getattr(job, "document_url", None)
        if url is None:
            raise InvalidJob("Scan to URL needs the document's URL")
        if not url.lower().startswith(("https://", "http://")):
            raise InvalidJob("the document URL must be an http or https URL")
        html_body = html_of(subject, body, check_header("document URL", url))
        body = f"{body}\n\nThe document is available at:\n{url}\n"
        attachments = []
    elif function in HTML_FUNCTIONS:
        html_body = html_of(subject, intro, tables=html_tables(content))
    attachments = [*attachments, *content.attachments]
    for attachment in attachments:
        check_header("attachment name", attachment.filename)
        check_header("attachment type", attachment.content_type)
    message = MimeMessage(tuple(headers), body, tuple(attachments), new_boundary(), html_body)
    return message, to + cc + bcc
