"""mail-service settings (environment prefix `FLEETMAIL_MAIL_`)."""

from __future__ import annotations

from pathlib import Path

from fleetmail_runtime.settings import CommonSettings, settings_config
from pydantic import Field
from pydantic_settings import BaseSettings


class MailSettings(BaseSettings):
    model_config = settings_config("FLEETMAIL_MAIL_")

    common: CommonSettings = Field(default_factory=CommonSettings)
    smtp_ca_bundle: Path | None = Field(
        default=None, description="Extra CA file trusted for SMTP servers (default: system CAs)"
    )
    smtp_timeout_s: float = Field(default=60, gt=0)
    smtp_connections_per_sender: int = Field(
        default=3,
        ge=1,
        description="Authenticated SMTP connections kept per sender and server by one replica (no "
        "more than the provider lets a mailbox submit at once: Exchange Online takes 3)",
    )
    smtp_idle_timeout_s: float = Field(
        default=60, gt=0, description="Close a pooled connection idle this long"
    )
    token_timeout_s: float = Field(default=10, gt=0)
    max_deliver: int = Field(default=8, ge=1, description="Deliveries of one job before dead letter")
    ack_wait_s: float = Field(
        default=30,
        gt=0,
        description="JetStream redelivers a job this long after a replica stopped answering for it "
        "(a replica working on a long delivery says so every third of it)",
    )
    retry_base_s: float = Field(default=5, gt=0, description="First retry delay; doubles, with jitter")
    retry_max_s: float = Field(default=300, gt=0)
    park_timeout_s: float = Field(
        default=900, gt=0, description="How long a job waits for its login user to sign in"
    )
    administrator_wait_s: float = Field(
        default=24 * 3600,
        gt=0,
        description="How long a job waits for the administrator token when OAuth 2.0 is on and it "
        "was never acquired; past it the job is dead-lettered (authorization_timeout)",
    )
    park_sweep_s: float = Field(default=30, gt=0, description="How often parked jobs are checked")
    ledger_write_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a sent job's ledger record is retried through a bus outage"
    )
    attachment_sweep_s: float = Field(
        default=300,
        gt=0,
        description="How often documents no job holds (expired dead letters', orphans) are removed",
    )
    attachment_orphan_grace_s: float = Field(
        default=3600,
        gt=0,
        description="An object younger than this is never swept (its job may still be being "
        "queued); an unheld object goes at the first sweep after two have found it unheld",
    )
    attachment_store_alert_percent: float = Field(
        default=80,
        gt=0,
        le=100,
        description="Log an error when the attachment store passes this share of its size limit",
    )
    batch_size: int = Field(default=16, ge=1, description="Jobs fetched and delivered concurrently")
    helo_name: str = Field(default="fleetmail.local")
    microsoft_concurrent_submissions: int = Field(
        default=3,
        ge=1,
        description="Messages of one Microsoft 365 mailbox in submission at once, across replicas",
    )
    microsoft_messages_per_minute: float = Field(
        default=30, gt=0, description="Messages a minute of one Microsoft 365 mailbox, across replicas"
    )
    google_concurrent_submissions: int = Field(
        default=3, ge=1, description="Messages of one Gmail mailbox in submission at once, across replicas"
    )
    google_messages_per_minute: float | None = Field(
        default=None,
        gt=0,
        description="Messages a minute of one Gmail mailbox (none: Gmail sets only a daily limit)",
    )
    microsoft_recipients_per_message: int = Field(
        default=500,
        ge=1,
        description="More recipients than this are sent as several messages (Exchange Online)",
    )
    google_recipients_per_message: int = Field(
        default=100, ge=1, description="More recipients than this are sent as several messages (Gmail)"
    )
    pacing_horizon_s: float = Field(
        default=2,
        gt=0,
        description=(
            "A mailbox's turn (or a free place) further away than this is waited for in the queue, "
            "not in a replica: a batch of jobs is fetched again only when all of it is done, so a "
            "long wait here would hold back other tenants' jobs"
        ),
    )
    submission_lease_s: float = Field(
        default=30,
        gt=0,
        description="A submission's place at its mailbox is freed after this if its replica died "
        "(a live submission renews it every third of it, however long it takes)",
    )
    submission_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a submission whose mailbox is full (other replicas) looks again",
    )
    microsoft_daily_recipients: int = Field(
        default=10_000,
        ge=1,
        description="Recipients one Microsoft 365 mailbox may send to over the quota window (Exchange "
        "Online: 10,000 a day), counted across replicas; jobs past it wait for the window",
    )
    google_daily_messages: int = Field(
        default=2_000,
        ge=1,
        description="Messages one Gmail mailbox may send over the quota window (Workspace: 2,000 a "
        "day; consumer and trial accounts: 500), counted across replicas; jobs past it wait",
    )
    quota_window_s: float = Field(
        default=86_400,
        gt=0,
        description="The rolling window the providers count the daily quota over (24 hours), "
        "counted in 24 buckets; after a quota reply a mailbox waits until its oldest bucket leaves it",
    )
    graph_url: str = Field(
        default="https://graph.microsoft.com",
        description="Microsoft Graph (transport graph): national clouds, the emulator",
    )
    graph_upload_hosts: tuple[str, ...] = Field(
        default=("outlook.office.com", "outlook.office365.com"),
        description="Hosts Graph's attachment upload URLs may name besides graph_url's: a message's "
        "bytes go to no other",
    )
    gmail_api_url: str = Field(
        default="https://gmail.googleapis.com", description="The Gmail API (transport gmail_api)"
    )
    api_ca_bundle: Path | None = Field(
        default=None, description="Extra CA file trusted for the mail APIs (default: system CAs)"
    )
    api_timeout_s: float = Field(default=120, gt=0, description="One mail API request (an upload range)")
    api_retry_after_max_s: float = Field(
        default=3600,
        ge=1,
        description="The longest a mail API's Retry-After may hold a job back (longer ones are cut "
        "to this; at least 1 s is always waited)",
    )
    graph_concurrent_requests: int = Field(
        default=4,
        ge=1,
        description="Graph requests of one mailbox at once, across replicas (Outlook service: 4 per app "
        "and mailbox)",
    )
    graph_requests_per_window: int = Field(
        default=10_000,
        ge=1,
        description="Graph requests per app and mailbox over graph_request_window_s (10,000 per 10 "
        "minutes): messages are paced to it; a 429 waits its Retry-After",
    )
    graph_request_window_s: float = Field(default=600, gt=0)
    gmail_api_messages_per_minute: float = Field(
        default=150,
        gt=0,
        description="Messages a minute of one Gmail account through the API (15,000 quota units a "
        "minute per user, 100 a send); the daily limit is Gmail's, as over SMTP",
    )
    max_message_bytes_microsoft: int = Field(
        default=36_700_160,
        gt=0,
        description="Largest message as sent (encoded) for Microsoft 365: its default send limit, 35 MB",
    )
    max_message_bytes_gmail_api: int = Field(
        default=35 * 1024 * 1024,
        gt=0,
        description="Largest message as sent through the Gmail API (its media upload limit, 35 MB: a "
        "25 MB scan fits, which Gmail's SMTP refuses)",
    )
    max_message_bytes_google: int = Field(
        default=35_882_577,
        gt=0,
        description="Largest message as sent for Gmail (the SIZE smtp.gmail.com advertises; about 25 MB "
        "of attachments)",
    )
