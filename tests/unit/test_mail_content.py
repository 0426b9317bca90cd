"""What each function's message says: the facts in the plain text and in the HTML, the
counters as a table and as a CSV file, the fax's sender in the subject (pure compose)."""

import csv
import email
import email.policy
import io
from datetime import UTC, datetime

import pytest
from fleetmail_contracts.jobs import (
    ForwardFax,
    JobFunction,
    RouteTsiFax,
    SendApplicationEmail,
    SendEmailNotification,
    SendStatusNotification,
    SendTotalCounterNotification,
    SendTxResultReport,
    SendUserBoxEmail,
)
from mail_service.domain.compose import compose
from mail_service.domain.content import counters_filename, csv_cell
from mail_service.domain.mime import AttachmentSource, in_memory
from mail_service.errors import InvalidJob

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
SUBMITTED = datetime(2026, 11, 28, 9, 29, 58, tzinfo=UTC)
BASE = {"job_id": "job-1", "tenant_id": "t1", "device_id": "mfp-7", "submitted_at": SUBMITTED}
TO = ("ops@t1.example",)


def fax() -> AttachmentSource:
    return AttachmentSource("fax.tif", "image/tiff", in_memory(b"II*\x00fax"), 7)


async def delivered(job, function, attachments=()) -> email.message.EmailMessage:
    message, _ = compose(job, function, "admin@t1.example", list(attachments), NOW)
    return email.message_from_bytes(await message.to_bytes(), policy=email.policy.default)


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    page = message.get_body(preferencelist=("html",))
    assert plain is not None and page is not None, "a plain text and an HTML part"
    return plain.get_content(), page.get_content()


def facts(plain: str) -> dict[str, str]:
    """The `Label: value` lines of the plain text, as a script reads them."""
    return dict(line.split(": ", 1) for line in plain.splitlines() if ": " in line)


async def test_a_total_counter_notification_lists_every_counter_and_attaches_them_as_csv() -> None:
    counters = {"Total": 120345, "Copy Black": 80000, "Print Color": 40345, "=cmd|' /C calc'!A0": 7}
    job = SendTotalCounterNotification(
        **BASE, to=TO, counters=counters, counted_at=datetime(2026, 11, 27, 23, 59, tzinfo=UTC)
    )
    message = await delivered(job, JobFunction.TOTAL_COUNTER_NOTIFICATION)
    plain, page = parts(message)
    assert facts(plain)["Counted at"] == "2026-11-27T23:59:00Z"
    table = plain[plain.index("Counter ") :].splitlines()
    assert table[0].split() == ["Counter", "Value"] and set(table[1]) == {"-", " "}
    assert {row.rsplit(None, 1)[0].strip(): int(row.rsplit(None, 1)[1]) for row in table[2:]} == counters
    for name, value in counters.items():
        assert f"<tr><td>{name.replace(chr(39), '&#x27;')}</td><td>{value}</td></tr>" in page
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "counters-mfp-7-2026-11-27.csv"
    assert attachment.get_content_type() == "text/csv"
    rows = list(csv.reader(io.StringIO(attachment.get_content())))
    assert rows[0] == ["counter", "value"]
    assert rows[1:4] == [["Total", "120345"], ["Copy Black", "80000"], ["Print Color", "40345"]]
    assert rows[4] == ["'=cmd|' /C calc'!A0", "7"], "a spreadsheet shows it as text, never runs it"


async def test_counters_are_sent_after_the_devices_own_attachments() -> None:
    job = SendTotalCounterNotification(**BASE, to=TO, counters={"Total": 1})
    message = await delivered(job, JobFunction.TOTAL_COUNTER_NOTIFICATION, [fax()])
    names = [a.get_filename() for a in message.iter_attachments()]
    assert names == ["fax.tif", "counters-mfp-7-2026-11-28.csv"], "dated by submission when unread"


async def test_a_notification_without_counters_says_so() -> None:
    job = SendTotalCounterNotification(**BASE, to=TO)
    message = await delivered(job, JobFunction.TOTAL_COUNTER_NOTIFICATION)
    plain, page = parts(message)
    assert "No counters were reported." in plain and "No counters were reported." in page
    [attachment] = list(message.iter_attachments())
    assert list(csv.reader(io.StringIO(attachment.get_content()))) == [["counter", "value"]]


async def test_a_failed_tx_result_report_says_destination_result_pages_time_and_error_code() -> None:
    job = SendTxResultReport(
        **BASE,
        to=TO,
        destination="+49 30 5555",
        result="NG",
        pages=3,
        transmitted_at=datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC),
        error_code="#0017",
    )
    plain, page = parts(await delivered(job, JobFunction.TX_RESULT_REPORT))
    assert (
        facts(plain).items()
        >= {
            "Device": "mfp-7",
            "Destination": "+49 30 5555",
            "Result": "NG",
            "Pages": "3",
            "Time": "2026-11-28T10:00:05Z",
            "Error code": "#0017",
        }.items()
    )
    assert '<th scope="row">Error code</th><td>#0017</td>' in page
    assert '<th scope="row">Pages</th><td>3</td>' in page


async def test_a_successful_tx_result_report_has_no_error_code_and_its_time_defaults_to_submission() -> None:
    job = SendTxResultReport(**BASE, to=TO, destination="+49 30 5555", result="OK", pages=1)
    plain, page = parts(await delivered(job, JobFunction.TX_RESULT_REPORT))
    assert "Error code" not in plain and "Error code" not in page
    assert facts(plain)["Time"] == "2026-11-28T09:29:58Z"


async def test_a_status_notification_says_the_status_and_its_time() -> None:
    job = SendStatusNotification(
        **BASE, to=TO, status="Paper jam in tray 2", status_at=datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    )
    plain, page = parts(await delivered(job, JobFunction.STATUS_NOTIFICATION))
    assert facts(plain)["Status"] == "Paper jam in tray 2" and facts(plain)["Time"] == "2026-11-28T08:00:00Z"
    assert "<td>Paper jam in tray 2</td>" in page and "<td>2026-11-28T08:00:00Z</td>" in page


async def test_an_email_notification_says_the_event() -> None:
    job = SendEmailNotification(**BASE, to=TO, event="Toner low (black)")
    plain, page = parts(await delivered(job, JobFunction.EMAIL_NOTIFICATION))
    assert facts(plain)["Event"] == "Toner low (black)" and "<td>Toner low (black)</td>" in page


@pytest.mark.parametrize(
    ("job", "function", "subject", "label", "value"),
    [
        (
            ForwardFax(**BASE, to=TO, sender_fax_number="+49 30 1234"),
            JobFunction.FORWARD_TX,
            "Forwarded fax from +49 30 1234",
            "Sender's fax number",
            "+49 30 1234",
        ),
        (
            RouteTsiFax(**BASE, to=TO, tsi="ACME SALES"),
            JobFunction.TSI_ROUTING,
            "Routed fax (TSI ACME SALES)",
            "TSI",
            "ACME SALES",
        ),
    ],
)
async def test_a_forwarded_fax_names_its_sender_in_subject_and_body_and_carries_the_fax(
    job, function, subject, label, value
) -> None:
    message = await delivered(job, function, [fax()])
    plain, page = parts(message)
    assert message["Subject"] == subject
    assert facts(plain)[label] == value and f"<td>{value}</td>" in page
    assert [a.get_content_type() for a in message.iter_attachments()] == ["image/tiff"]


async def test_the_subject_a_device_gave_keeps_its_words_and_gains_the_sender_once() -> None:
    named = ForwardFax(**BASE, to=TO, subject="Fax from +49 30 1234", sender_fax_number="+49 30 1234")
    assert (await delivered(named, JobFunction.FORWARD_TX, [fax()]))["Subject"] == "Fax from +49 30 1234"
    plain = ForwardFax(**BASE, to=TO, subject="Incoming fax", sender_fax_number="+49 30 1234")
    assert (await delivered(plain, JobFunction.FORWARD_TX, [fax()]))["Subject"] == (
        "Incoming fax from +49 30 1234"
    )


@pytest.mark.parametrize("function", [JobFunction.FORWARD_TX, JobFunction.TSI_ROUTING])
def test_a_forwarded_fax_without_its_document_is_refused(function: JobFunction) -> None:
    job = (ForwardFax if function is JobFunction.FORWARD_TX else RouteTsiFax)(**BASE, to=TO)
    with pytest.raises(InvalidJob, match="needs its document") as refused:
        compose(job, function, "admin@t1.example", [], NOW)
    assert refused.value.reason.value == "attachment_missing"


async def test_a_user_box_mail_names_the_box_and_an_application_mail_the_application() -> None:
    box = SendUserBoxEmail(**BASE, to=TO, user_box="Sales", user_box_number="0042")
    plain, page = parts(await delivered(box, JobFunction.USER_BOX_EMAIL, [fax()]))
    assert facts(plain)["User box"] == "Sales" and facts(plain)["Box number"] == "0042"
    assert "<td>Sales</td>" in page and "<td>0042</td>" in page
    app = SendApplicationEmail(**BASE, to=TO, application="Scan Hub 2.1")
    plain, page = parts(await delivered(app, JobFunction.APPLICATION_EMAIL))
    assert facts(plain)["Application"] == "Scan Hub 2.1" and "<td>Scan Hub 2.1</td>" in page


async def test_device_text_is_escaped_in_html_and_kept_on_one_line_in_text() -> None:
    job = SendStatusNotification(
        **BASE, to=TO, body="<b>intro</b>", status='<script>alert("x")</script>\nFake: line'
    )
    plain, page = parts(await delivered(job, JobFunction.STATUS_NOTIFICATION))
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<b>" not in page and "&lt;b&gt;intro&lt;/b&gt;" in page
    assert facts(plain)["Status"] == '<script>alert("x")</script> Fake: line'
    assert "Fake" not in facts(plain), "a line break in a value never makes a fact of its own"
    counters = SendTotalCounterNotification(**BASE, to=TO, counters={"<img src=x>": 1})
    _, page = parts(await delivered(counters, JobFunction.TOTAL_COUNTER_NOTIFICATION))
    assert "<img" not in page and "&lt;img src=x&gt;" in page


def test_a_line_break_in_the_fax_sender_never_reaches_the_subject_header() -> None:
    job = ForwardFax(**BASE, to=TO, sender_fax_number="+49\r\nBcc: x@evil.example")
    message, _ = compose(job, JobFunction.FORWARD_TX, "admin@t1.example", [fax()], NOW)
    assert dict(message.headers)["Subject"] == "Forwarded fax from +49 Bcc: x@evil.example"


def test_the_csv_file_name_is_safe_whatever_the_device_id() -> None:
    assert counters_filename("../../etc/pass wd", SUBMITTED) == "counters-etc_pass_wd-2026-11-28.csv"
    assert counters_filename("///", SUBMITTED) == "counters-device-2026-11-28.csv"
    assert [csv_cell(c) for c in ("+1", "-1", "@a", "Total")] == ["'+1", "'-1", "'@a", "Total"]
