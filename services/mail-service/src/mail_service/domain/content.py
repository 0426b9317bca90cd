"""What each function's message says besides the device's own text: the facts a person reads
(the event, the status and its time, a transmission's result, the fax's sender), the
counters of a Total Counter Notification as a table and as a CSV file.

The plain text keeps one fact per line as `Label: value`, and the counters as a table whose
last column is the value, so a script can read either; the CSV file is the form meant for
scripts and spreadsheets. Times are ISO 8601 in UTC. Everything here is device-provided
text: line breaks are flattened in the plain text, and the HTML escapes it all.
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from fleetmail_contracts.jobs import (
    ForwardFax,
    JobBase,
    RouteTsiFax,
    SendApplicationEmail,
    SendEmailNotification,
    SendStatusNotification,
    SendTotalCounterNotification,
    SendTxResultReport,
    SendUserBoxEmail,
)

from .mime import AttachmentSource, in_memory

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

COUNTER_HEADINGS = ("Counter", "Value")
CSV_HEADER = ("counter", "value")


@dataclass(frozen=True)
class Content:
    """A function's own content of the message."""

    facts: tuple[tuple[str, str], ...] = ()
    """(label, value) rows, in reading order."""
    counters: tuple[tuple[str, int], ...] | None = None
    """A Total Counter Notification's counters; None for every other function."""
    subject_note: tuple[str, str] | None = None
    """(value, note): the note is added to the subject unless the subject names the value
    already (the fax's sender)."""
    attachments: tuple[AttachmentSource, ...] = ()
    """Files made here, sent after the device's own."""


def one_line(value: str) -> str:
    """Device text as one line: control characters (line breaks, tabs) become one space."""
    return _CONTROL.sub(" ", value).strip()


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(*rows: tuple[str, object]) -> tuple[tuple[str, str], ...]:
    """The rows that have a value; times as timestamps, text on one line."""
    kept = []
    for label, value in rows:
        if value is None:
            continue
        text = timestamp(value) if isinstance(value, datetime) else one_line(str(value))
        kept.append((label, text))
    return tuple(kept)


def csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading quote."""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def counters_csv(counters: tuple[tuple[str, int], ...]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((csv_cell(one_line(name)), value) for name, value in counters)
    return out.getvalue().encode("utf-8")


def counters_filename(device_id: str, moment: datetime) -> str:
    device = _FILENAME_UNSAFE.sub("_", device_id).strip("._") or "device"
    return f"counters-{device}-{moment.astimezone(UTC).date().isoformat()}.csv"


def content_of(job: JobBase) -> Content:
    """The facts (and files) of the job's function; nothing for a plain scan or Internet Fax."""
    device = ("Device", job.device_id)
    match job:
        case SendTotalCounterNotification():
            counted = job.counted_at or job.submitted_at
            counters = tuple(job.counters.items())
            data = counters_csv(counters)
            csv_file = AttachmentSource(
                counters_filename(job.device_id, counted),
                "text/csv; charset=utf-8",
                in_memory(data),
                len(data),
            )
            return Content(_rows(device, ("Counted at", counted)), counters, attachments=(csv_file,))
        case SendTxResultReport():
            return Content(
                _rows(
                    device,
                    ("Destination", job.destination),
                    ("Result", job.result),
                    ("Pages", job.pages),
                    ("Time", job.transmitted_at or job.submitted_at),
                    ("Error code", job.error_code),
                )
            )
        case SendStatusNotification():
            return Content(_rows(device, ("Status", job.status), ("Time", job.status_at or job.submitted_at)))
        case SendEmailNotification():
            return Content(_rows(device, ("Event", job.event), ("Time", job.event_at or job.submitted_at)))
        case ForwardFax():
            number = one_line(job.sender_fax_number) if job.sender_fax_number else None
            return Content(
                _rows(
                    device,
                    ("Sender's fax number", number),
                    ("Received", job.received_at or job.submitted_at),
                ),
                subject_note=(number, f"from {number}") if number else None,
            )
        case RouteTsiFax():
            tsi = one_line(job.tsi) if job.tsi else None
            return Content(
                _rows(device, ("TSI", tsi), ("Received", job.received_at or job.submitted_at)),
                subject_note=(tsi, f"(TSI {tsi})") if tsi else None,
            )
        case SendUserBoxEmail():
            return Content(_rows(device, ("User box", job.user_box), ("Box number", job.user_box_number)))
        case SendApplicationEmail():
            return Content(_rows(device, ("Application", job.application)))
    return Content()


def with_note(subject: str, content: Content) -> str:
    """The subject with the content's note added, unless it names the value already."""
    if content.subject_note is None or content.subject_note[0] in subject:
        return subject
    return f"{subject} {content.subject_note[1]}"


def text_of(content: Content) -> str:
    """The facts and the counters as plain text (empty when the function has none)."""
    blocks = []
    if content.facts:
        blocks.append("\n".join(f"{label}: {value}" for label, value in content.facts))
    if content.counters is not None:
        if not content.counters:
            blocks.append("No counters were reported.")
        else:
            names = [one_line(name) for name, _ in content.counters]
            values = [str(value) for _, value in content.counters]
            left = max(len(COUNTER_HEADINGS[0]), *(len(n) for n in names))
            right = max(len(COUNTER_HEADINGS[1]), *(len(v) for v in values))
            lines = [
                f"{COUNTER_HEADINGS[0]:<{left}}  {COUNTER_HEADINGS[1]:>{right}}",
                f"{'-' * left}  {'-' * right}",
                *(f"{n:<{left}}  {v:>{right}}" for n, v in zip(names, values, strict=True)),
            ]
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def html_tables(content: Content) -> str:
    """The facts and the counters as HTML tables, every value escaped."""
    parts = []
    if content.facts:
        rows = "".join(
            f'<tr><th scope="row">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>'
            for label, value in content.facts
        )
        parts.append(f'<table class="facts"><tbody>{rows}</tbody></table>')
    if content.counters is not None:
        if not content.counters:
            parts.append("<p>No counters were reported.</p>")
        else:
            head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in COUNTER_HEADINGS)
            rows = "".join(
                f"<tr><td>{html.escape(one_line(name))}</td><td>{value}</td></tr>"
                for name, value in content.counters
            )
            parts.append(
                f'<table class="counters"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
            )
    return "".join(parts)
