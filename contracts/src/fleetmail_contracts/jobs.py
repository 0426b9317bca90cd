"""Job commands: one per function in the device manual's table of OAuth e-mail functions.

User functions: Scan to E-mail, Scan to Me, Scan to URL, Internet Fax TX, E-mail from a
User Box, E-mail from an OpenAPI/IWS application. Administrator functions (always sent
with the administrator grant): E-mail Notification, Total Counter Notification,
Forward TX, TSI Routing, Status Notification, TX Result Report.

Each command travels on `fleetmail.jobs.v1.<function>` and is published with
`Nats-Msg-Id = job_id`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from ._base import Contract, Timestamp
from .streams import JOB_SUBJECT_PREFIX


class JobFunction(StrEnum):
    SCAN_TO_EMAIL = "scan_to_email"
    SCAN_TO_ME = "scan_to_me"
    SCAN_TO_URL = "scan_to_url"
    INTERNET_FAX_TX = "internet_fax_tx"
    USER_BOX_EMAIL = "user_box_email"
    APPLICATION_EMAIL = "application_email"
    EMAIL_NOTIFICATION = "email_notification"
    TOTAL_COUNTER_NOTIFICATION = "total_counter_notification"
    FORWARD_TX = "forward_tx"
    TSI_ROUTING = "tsi_routing"
    STATUS_NOTIFICATION = "status_notification"
    TX_RESULT_REPORT = "tx_result_report"


ADMINISTRATOR_FUNCTIONS = frozenset(
    {
        JobFunction.EMAIL_NOTIFICATION,
        JobFunction.TOTAL_COUNTER_NOTIFICATION,
        JobFunction.FORWARD_TX,
        JobFunction.TSI_ROUTING,
        JobFunction.STATUS_NOTIFICATION,
        JobFunction.TX_RESULT_REPORT,
    }
)
"""The device's administrator functions (notifications, reports, fax forwarding): always sent
with the administrator's grant, never a login user's."""


class AttachmentRef(Contract):
    """A document stored in the JetStream Object Store; messages carry only this reference."""

    object_name: str = Field(min_length=1, max_length=256)
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=127)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class JobBase(Contract):
    job_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=64)
    device_id: str = Field(min_length=1, max_length=64)
    submitted_at: Timestamp
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=100_000)
    attachments: tuple[AttachmentRef, ...] = ()
    login_user: str | None = Field(
        default=None, description="Address of the user logged in at the device, if any."
    )
    requested_from: str | None = Field(
        default=None, description="From address the user typed (From policy 'allow')."
    )


class SendScanToEmail(JobBase):
    function: Literal[JobFunction.SCAN_TO_EMAIL] = JobFunction.SCAN_TO_EMAIL


class SendScanToMe(JobBase):
    """Sent to the login user's own address."""

    function: Literal[JobFunction.SCAN_TO_ME] = JobFunction.SCAN_TO_ME


class SendScanToUrl(JobBase):
    """The message carries a link to the stored document, not the document."""

    function: Literal[JobFunction.SCAN_TO_URL] = JobFunction.SCAN_TO_URL
    document_url: str | None = Field(default=None, max_length=2048)


class SendInternetFax(JobBase):
    """Internet Fax TX: the fax image as TIFF, sent from the machine's address."""

    function: Literal[JobFunction.INTERNET_FAX_TX] = JobFunction.INTERNET_FAX_TX
    machine_address: str | None = None


class SendUserBoxEmail(JobBase):
    function: Literal[JobFunction.USER_BOX_EMAIL] = JobFunction.USER_BOX_EMAIL
    user_box: str | None = Field(default=None, max_length=64, description="The box's name.")
    user_box_number: str | None = Field(default=None, max_length=32, description="The box's number.")


class SendApplicationEmail(JobBase):
    """E-mail sending from an OpenAPI/IWS application on the device."""

    function: Literal[JobFunction.APPLICATION_EMAIL] = JobFunction.APPLICATION_EMAIL
    application: str | None = Field(default=None, max_length=128, description="The application's name.")


class SendEmailNotification(JobBase):
    function: Literal[JobFunction.EMAIL_NOTIFICATION] = JobFunction.EMAIL_NOTIFICATION
    event: str | None = Field(default=None, max_length=128)
    event_at: Timestamp | None = Field(default=None, description="When the event happened.")


class SendTotalCounterNotification(JobBase):
    function: Literal[JobFunction.TOTAL_COUNTER_NOTIFICATION] = JobFunction.TOTAL_COUNTER_NOTIFICATION
    counters: dict[str, int] = Field(
        default_factory=dict, description="Each counter's name and value, in the device's order."
    )
    counted_at: Timestamp | None = Field(default=None, description="When the counters were read.")


class ForwardFax(JobBase):
    """Forward TX: a received fax forwarded by e-mail."""

    function: Literal[JobFunction.FORWARD_TX] = JobFunction.FORWARD_TX
    sender_fax_number: str | None = Field(default=None, max_length=64)
    received_at: Timestamp | None = Field(default=None, description="When the fax was received.")


class RouteTsiFax(JobBase):
    """TSI Routing: a received fax routed by its sender's TSI."""

    function: Literal[JobFunction.TSI_ROUTING] = JobFunction.TSI_ROUTING
    tsi: str | None = Field(default=None, max_length=64)
    received_at: Timestamp | None = Field(default=None, description="When the fax was received.")


class SendStatusNotification(JobBase):
    function: Literal[JobFunction.STATUS_NOTIFICATION] = JobFunction.STATUS_NOTIFICATION
    status: str | None = Field(default=None, max_length=256)
    status_at: Timestamp | None = Field(default=None, description="When the device entered the status.")


class SendTxResultReport(JobBase):
    function: Literal[JobFunction.TX_RESULT_REPORT] = JobFunction.TX_RESULT_REPORT
    result: str | None = Field(default=None, max_length=256)
    destination: str | None = Field(default=None, max_length=256, description="Fax number or address.")
    pages: int | None = Field(default=None, ge=0, le=100_000)
    transmitted_at: Timestamp | None = Field(default=None, description="When the transmission ended.")
    error_code: str | None = Field(default=None, max_length=64, description="The device's code, when failed.")


JobCommand = Annotated[
    SendScanToEmail
    | SendScanToMe
    | SendScanToUrl
    | SendInternetFax
    | SendUserBoxEmail
    | SendApplicationEmail
    | SendEmailNotification
    | SendTotalCounterNotification
    | ForwardFax
    | RouteTsiFax
    | SendStatusNotification
    | SendTxResultReport,
    Field(discriminator="function"),
]

JOB_COMMANDS: dict[JobFunction, type[JobBase]] = {
    JobFunction.SCAN_TO_EMAIL: SendScanToEmail,
    JobFunction.SCAN_TO_ME: SendScanToMe,
    JobFunction.SCAN_TO_URL: SendScanToUrl,
    JobFunction.INTERNET_FAX_TX: SendInternetFax,
    JobFunction.USER_BOX_EMAIL: SendUserBoxEmail,
    JobFunction.APPLICATION_EMAIL: SendApplicationEmail,
    JobFunction.EMAIL_NOTIFICATION: SendEmailNotification,
    JobFunction.TOTAL_COUNTER_NOTIFICATION: SendTotalCounterNotification,
    JobFunction.FORWARD_TX: ForwardFax,
    JobFunction.TSI_ROUTING: RouteTsiFax,
    JobFunction.STATUS_NOTIFICATION: SendStatusNotification,
    JobFunction.TX_RESULT_REPORT: SendTxResultReport,
}

job_command_adapter: TypeAdapter[JobCommand] = TypeAdapter(JobCommand)


def job_subject(function: JobFunction) -> str:
    return f"{JOB_SUBJECT_PREFIX}{function.value}"


def resumed_job_subject(function: JobFunction) -> str:
    """A parked job put back by mail-service once its user signed in. A subject of its own, so
    that NATS permissions let mail-service put back its jobs and never send new ones."""
    return f"{JOB_SUBJECT_PREFIX}resumed.{function.value}"


JOBS_WILDCARD = f"{JOB_SUBJECT_PREFIX}>"
